"""Loaders for the real datasets used in the notebooks and benchmarks.

=====================================  =========================================
loader                                 data
=====================================  =========================================
:func:`load_mnist`                     MNIST images and labels, one split
:func:`mnist_subset`                   a stratified MNIST subset, flattened
:func:`load_mnist_or_digits`           the subset, or scikit-learn's digits
:func:`load_youtube_spam`              1,956 YouTube comments, spam or ham
:func:`load_wrench_youtube`            the same comments with 10 labeling
                                       functions' votes (WRENCH)
:func:`load_rte_crowd`                 800 RTE sentence pairs with 8,000
                                       Mechanical Turk labels
=====================================  =========================================

Every loader takes ``data_home`` and ``download``. Files are looked for in
``data_home``, then in the folder named by the environment variable
``INFLUENCE_KIT_DATA``, then in the user cache, and are otherwise downloaded
into the cache. Every file is checked against its published checksum before
use. :mod:`influence_kit.datasets._fetch` describes the rules in full.
"""

from ._fetch import (
    ENV_VAR,
    DatasetChecksumError,
    DatasetDownloadError,
    DatasetNotFoundError,
)
from .crowd_rte import CrowdLabels, load_rte_crowd
from .mnist import ImageSubset, load_mnist, load_mnist_or_digits, mnist_subset
from .youtube_spam import WeakLabelSplit, load_wrench_youtube, load_youtube_spam

__all__ = [
    "ENV_VAR",
    "CrowdLabels",
    "DatasetChecksumError",
    "DatasetDownloadError",
    "DatasetNotFoundError",
    "ImageSubset",
    "WeakLabelSplit",
    "load_mnist",
    "load_mnist_or_digits",
    "load_rte_crowd",
    "load_wrench_youtube",
    "load_youtube_spam",
    "mnist_subset",
]

"""YouTube spam comments, raw and with the outputs of 10 labeling functions.

The YouTube Spam Collection v1 has 1,956 comments from five music videos, each
labelled spam (1) or ham (0). Cite T.C. Alberto, J.V. Lochter and
T.A. Almeida, "TubeSpam: Comment Spam Filtering on YouTube", ICMLA 2015. Its
home is the UCI Machine Learning Repository (dataset 380). The CSV files are
downloaded one by one from a pinned commit of a public GitHub copy, which is
byte-identical to the UCI files and has a published SHA-256 for each file.

The WRENCH "youtube" dataset contains the same comments with the votes of the 10
labeling functions of the Snorkel spam tutorial, split into train (the Psy,
KatyPerry, LMFAO and Eminem comments) and valid and test (the Shakira
comments). Cite J. Zhang et al., "WRENCH: A Comprehensive Benchmark for Weak
Supervision", NeurIPS 2021 Datasets and Benchmarks.

Files are located, verified and downloaded as described in
:mod:`influence_kit.datasets._fetch`.
"""

import io
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._fetch import DataFile, check_choice, fetch

_GITHUB_COPY = (
    "https://raw.githubusercontent.com/nhbess/weak_supervision_tutorial/"
    "1d2d7cc62d4161b8af8192bd038d93ada8012046/part_2_spam_clf/data/youtube/"
)

YOUTUBE_SPAM_BASE_URLS = [_GITHUB_COPY + "raw/"]
"""Mirrors of the five UCI CSV files, tried in order."""

WRENCH_YOUTUBE_BASE_URLS = [_GITHUB_COPY]
"""Mirrors of the WRENCH JSON files, tried in order."""

COLUMNS = ("COMMENT_ID", "DATE", "CONTENT", "CLASS", "VIDEO")

WRENCH_SPLITS = ("train", "valid", "test")

LF_NAMES = (
    "keyword_my",
    "keyword_subscribe",
    "keyword_link",
    "keyword_please",
    "keyword_song",
    "regex_check_out",
    "short_comment",
    "has_person_nlp",
    "textblob_polarity",
    "textblob_subjectivity",
)
"""Names of the labeling functions, in the column order of ``weak_labels``, as
listed in the WRENCH dataset's readme.txt."""

_VIDEO_FILES = {
    "Psy": DataFile(
        name="youtube_spam/Youtube01-Psy.csv",
        remote_path="Youtube01-Psy.csv",
        sha256="19797e6c77690e3c8809cfd2853ae7341390636367ba66cf5d4f4083f0b88535",
    ),
    "KatyPerry": DataFile(
        name="youtube_spam/Youtube02-KatyPerry.csv",
        remote_path="Youtube02-KatyPerry.csv",
        sha256="902c614f8ef24f987d6f614d7e6111aa5160b89a0646b68e007bd6044a3d123b",
    ),
    "LMFAO": DataFile(
        name="youtube_spam/Youtube03-LMFAO.csv",
        remote_path="Youtube03-LMFAO.csv",
        sha256="702ef589860a1831956f527760a3d9737ef8a07ab36c7de35b92b8898b8c3928",
    ),
    "Eminem": DataFile(
        name="youtube_spam/Youtube04-Eminem.csv",
        remote_path="Youtube04-Eminem.csv",
        sha256="92f54eb6b22fdf3b7ae85e1f500e5aa7442edd025e504b988a97078756187e76",
    ),
    "Shakira": DataFile(
        name="youtube_spam/Youtube05-Shakira.csv",
        remote_path="Youtube05-Shakira.csv",
        sha256="1d8ab47b71e8037c51183b2fc62f0591a48a4b54f3a4f5d9d3043113b274e98e",
    ),
}

_WRENCH_FILES = {
    "train": DataFile(
        name="wrench_youtube_spam_lf/train.json",
        remote_path="train.json",
        sha256="a435c4e6853c95ac8bdc6bcf9e01d4bad39aa8e5713d273ed01aa5edbfc215b8",
    ),
    "valid": DataFile(
        name="wrench_youtube_spam_lf/valid.json",
        remote_path="valid.json",
        sha256="278b947d748b4b921b2dd60918318f7ee817584d85a719d0db6f5365d6e87b01",
    ),
    "test": DataFile(
        name="wrench_youtube_spam_lf/test.json",
        remote_path="test.json",
        sha256="abcadb6e0a81d1b1a1f19ad6acb73fd201288fae3e89d88593fae9cbca4d5a21",
    ),
}


def load_youtube_spam(data_home=None, download=True):
    """Load the 1,956 comments of the YouTube Spam Collection.

    The files' ``AUTHOR`` column contains commenters' real display names. It is
    skipped while parsing, so it never reaches the returned frame.

    Parameters
    ----------
    data_home : str or os.PathLike or None, default=None
        Folder that contains ``youtube_spam/``, searched first. The other
        places are the folder in the environment variable
        ``INFLUENCE_KIT_DATA`` and the user cache.
    download : bool, default=True
        Whether to download the files into the user cache when no local copy
        exists.

    Returns
    -------
    pandas.DataFrame of shape (1956, 5)
        One row per comment, the videos in the order Psy, KatyPerry, LMFAO,
        Eminem, Shakira and each video's comments in the files' chronological
        order. Columns:

        - ``COMMENT_ID`` (str): YouTube comment id. Three ids occur twice.
        - ``DATE`` (datetime64): time of posting, NaT for the 245 comments
          without one.
        - ``CONTENT`` (str): the comment as released. Many end with U+FEFF and
          some contain HTML such as ``<br />``.
        - ``CLASS`` (int64): 1 for spam (1,005 rows), 0 for ham (951 rows).
        - ``VIDEO`` (str): the video, taken from the file name.

    Raises
    ------
    DatasetNotFoundError
        If a file is not found and `download` is False, or every download
        failed (then a DatasetDownloadError).
    DatasetChecksumError
        If a file found does not match its published SHA-256.

    Examples
    --------
    >>> comments = load_youtube_spam()  # doctest: +SKIP
    >>> comments["CLASS"].value_counts().to_dict()  # doctest: +SKIP
    {1: 1005, 0: 951}
    """
    frames = []
    for video, data_file in _VIDEO_FILES.items():
        fetched = fetch(data_file, YOUTUBE_SPAM_BASE_URLS, data_home, download)
        frame = pd.read_csv(
            io.BytesIO(fetched.content),
            encoding="utf-8",
            usecols=["COMMENT_ID", "DATE", "CONTENT", "CLASS"],
            dtype={"COMMENT_ID": str, "DATE": str, "CONTENT": str, "CLASS": "int64"},
            # Keep every comment verbatim: without this, text such as "NA"
            # would become a missing value.
            keep_default_na=False,
        )
        frame["VIDEO"] = video
        frames.append(frame)

    comments = pd.concat(frames, ignore_index=True)
    dates = comments["DATE"]
    comments["DATE"] = pd.to_datetime(dates.where(dates != ""), format="ISO8601")
    return comments[list(COLUMNS)]


@dataclass(repr=False)
class WeakLabelSplit:
    """One split of the WRENCH YouTube dataset.

    Attributes
    ----------
    split : str
        ``"train"``, ``"valid"`` or ``"test"``.
    texts : list of str
        The comments, ``n_samples`` of them, verbatim as in the CSV files.
    labels : ndarray of shape (n_samples,), dtype int64
        Gold labels: 1 for spam, 0 for ham.
    weak_labels : ndarray of shape (n_samples, 10), dtype int64
        Vote of each labeling function on each comment: 1 (spam), 0 (ham) or
        -1 (abstain).
    lf_names : tuple of str
        Name of the labeling function behind each column of `weak_labels`.
    """

    split: str
    texts: list
    labels: np.ndarray
    weak_labels: np.ndarray
    lf_names: tuple

    def __repr__(self):
        return (
            f"WeakLabelSplit(split={self.split!r}, n_samples={len(self.texts)}, "
            f"n_labeling_functions={len(self.lf_names)})"
        )


def load_wrench_youtube(split, data_home=None, download=True):
    """Load one split of the WRENCH YouTube spam label matrix.

    Parameters
    ----------
    split : {"train", "valid", "test"}
        The split: 1,586, 120 or 250 comments.
    data_home : str or os.PathLike or None, default=None
        Folder that contains ``wrench_youtube_spam_lf/``, as in
        :func:`load_youtube_spam`.
    download : bool, default=True
        Whether to download the file when no local copy exists.

    Returns
    -------
    WeakLabelSplit
        ``texts``, ``labels`` of shape (n_samples,), ``weak_labels`` of shape
        (n_samples, 10) with -1 for an abstention, and ``lf_names``.

    Raises
    ------
    ValueError
        If `split` is not "train", "valid" or "test".
    DatasetNotFoundError
        If the file is not found and `download` is False, or every download
        failed (then a DatasetDownloadError).
    DatasetChecksumError
        If the file found does not match its published SHA-256.

    Examples
    --------
    >>> valid = load_wrench_youtube("valid")  # doctest: +SKIP
    >>> valid.weak_labels.shape  # doctest: +SKIP
    (120, 10)
    """
    split = check_choice("split", split, WRENCH_SPLITS, "WRENCH YouTube split")
    fetched = fetch(_WRENCH_FILES[split], WRENCH_YOUTUBE_BASE_URLS, data_home, download)

    # The file is one JSON object keyed "0", "1", ... in row order.
    records = json.loads(fetched.content)
    items = [records[key] for key in sorted(records, key=int)]
    return WeakLabelSplit(
        split=split,
        texts=[item["data"]["text"] for item in items],
        labels=np.array([item["label"] for item in items], dtype=np.int64),
        weak_labels=np.array([item["weak_labels"] for item in items], dtype=np.int64),
        lf_names=LF_NAMES,
    )

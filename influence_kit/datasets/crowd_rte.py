"""Crowd labels for textual entailment (RTE) with worker ids and gold labels.

Snow et al. had Amazon Mechanical Turk workers judge the 800 sentence pairs of
the PASCAL RTE-1 test set: does the text entail the hypothesis? Each pair got
10 labels, from 164 workers in all, and has an expert gold label. Cite
R. Snow, B. O'Connor, D. Jurafsky and A.Y. Ng, "Cheap and Fast - But is it
Good? Evaluating Non-Expert Annotations for Natural Language Tasks",
EMNLP 2008, and for the items I. Dagan, O. Glickman and B. Magnini, "The PASCAL
Recognising Textual Entailment Challenge", MLCW 2005.

The item text is read from the original RTE-1 XML file with an XML parser, so
entities such as ``&apos;`` and ``&#163;`` come out as characters. The TSV
conversion shipped beside it leaves some of them undecoded and is not used.

Files are located, verified and downloaded as described in
:mod:`influence_kit.datasets._fetch`.
"""

import io
from dataclasses import dataclass
from xml.etree import ElementTree

import pandas as pd

from ._fetch import DataFile, fetch

RTE_CROWD_BASE_URLS = [
    (
        "https://raw.githubusercontent.com/edwinrobots/bayesian_combination_tutorial2/"
        "f98448e2e9a941463aa92f418eefd1f43bd5a637/"
    ),
]
"""Mirrors of the Snow et al. files, tried in order. The paths below each base
URL are those of the GitHub copy that this list points to."""

_LABELS_FILE = DataFile(
    name="snow2008_crowd/all_collected_data/rte.standardized.tsv",
    remote_path="all_collected_data/rte.standardized.tsv",
    sha256="3187c5de59b9b9c596d490d25b5f5f108090a35cbdd10e81f21e6d1939d6ba79",
)
_ITEMS_FILE = DataFile(
    name="snow2008_crowd/rte/annotated_test.xml",
    remote_path=(
        "snow2008_mturk_data_with_orig_files_assembled_201904/rte/orig/"
        "annotated_test.xml"
    ),
    sha256="24e710eb55cb5b7abfd3a8a17b44fb568fba5e472251552512954ca517e87888",
)

_GOLD_VALUES = {"TRUE": 1, "FALSE": 0}


@dataclass(repr=False)
class CrowdLabels:
    """Items and the crowd labels given to them.

    Attributes
    ----------
    items : pandas.DataFrame of shape (n_items, 5)
        One row per sentence pair, in the order of the XML file. Columns
        ``orig_id`` (int64, the RTE pair id), ``text`` (str), ``hypothesis``
        (str), ``gold`` (int64, 1 when the text entails the hypothesis) and
        ``task`` (str, the RTE-1 source task: CD, IE, IR, MT, PP, QA or RC).
    labels : pandas.DataFrame of shape (n_labels, 4)
        One row per crowd label, in file order. Columns ``orig_id`` (int64,
        joins ``items.orig_id``), ``worker_id`` (str, the Mechanical Turk
        WorkerId as released), ``response`` (int64, 0 or 1) and ``gold``
        (int64, the item's gold label repeated).
    """

    items: pd.DataFrame
    labels: pd.DataFrame

    def __repr__(self):
        return (
            f"CrowdLabels(n_items={len(self.items)}, n_labels={len(self.labels)}, "
            f"n_workers={self.labels['worker_id'].nunique()})"
        )


def load_rte_crowd(data_home=None, download=True):
    """Load the RTE sentence pairs and their Mechanical Turk labels.

    Parameters
    ----------
    data_home : str or os.PathLike or None, default=None
        Folder that contains ``snow2008_crowd/``, searched first. The other
        places are the folder in the environment variable
        ``INFLUENCE_KIT_DATA`` and the user cache.
    download : bool, default=True
        Whether to download the files into the user cache when no local copy
        exists.

    Returns
    -------
    CrowdLabels
        ``items`` with 800 rows and ``labels`` with 8,000 rows (10 per item,
        from 164 workers). :class:`CrowdLabels` describes the columns.

    Raises
    ------
    DatasetNotFoundError
        If a file is not found and `download` is False, or every download
        failed (then a DatasetDownloadError).
    DatasetChecksumError
        If a file found does not match its published SHA-256.

    Examples
    --------
    >>> rte = load_rte_crowd()  # doctest: +SKIP
    >>> rte  # doctest: +SKIP
    CrowdLabels(n_items=800, n_labels=8000, n_workers=164)
    """
    items_file = fetch(_ITEMS_FILE, RTE_CROWD_BASE_URLS, data_home, download)
    labels_file = fetch(_LABELS_FILE, RTE_CROWD_BASE_URLS, data_home, download)
    return CrowdLabels(
        items=_parse_items(items_file.content),
        labels=_parse_labels(labels_file.content),
    )


def _parse_items(content):
    """Read the ``<pair id value task><t/><h/></pair>`` elements of RTE-1."""
    # ElementTree does not load the external DTD that the file names. It needs
    # no DTD, because the file uses only predefined and numeric entities.
    corpus = ElementTree.fromstring(content)
    rows = [
        {
            "orig_id": int(pair.get("id")),
            "text": pair.findtext("t"),
            "hypothesis": pair.findtext("h"),
            "gold": _GOLD_VALUES[pair.get("value")],
            "task": pair.get("task"),
        }
        for pair in corpus.iter("pair")
    ]
    return pd.DataFrame(rows).astype(
        {
            "orig_id": "int64",
            "text": str,
            "hypothesis": str,
            "gold": "int64",
            "task": str,
        }
    )


def _parse_labels(content):
    """Read the crowd labels, dropping the per-label annotation ids."""
    labels = pd.read_csv(
        io.BytesIO(content),
        sep="\t",
        usecols=["!amt_worker_ids", "orig_id", "response", "gold"],
        dtype={
            "!amt_worker_ids": str,
            "orig_id": "int64",
            "response": "int64",
            "gold": "int64",
        },
    )
    labels = labels.rename(columns={"!amt_worker_ids": "worker_id"})
    return labels[["orig_id", "worker_id", "response", "gold"]]

"""Feature extraction for the two text case studies.

YouTube comments become TF-IDF vectors over a capped vocabulary, so the
logistic-regression Hessian stays small enough to factor (one parameter per
vocabulary word, plus the intercept). RTE sentence pairs become a handful of
lexical-overlap features, indicators of the RTE task, and a bag of words of the
hypothesis.
"""

import html
import itertools
import re

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import (
    ENGLISH_STOP_WORDS,
    CountVectorizer,
    TfidfVectorizer,
)

_HTML_TAG = re.compile(r"<[^>]+>")
_LINK = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_HANDLE = re.compile(r"@\w+")
_TOKEN = re.compile(r"[a-z0-9]+(?:[.,][0-9]+)*")
_CAPITALISED = re.compile(r"\b[A-Z][A-Za-z]+")
NEGATION_WORDS = frozenset(
    {
        "not",
        "no",
        "never",
        "nor",
        "none",
        "nobody",
        "nothing",
        "neither",
        "without",
        "cannot",
    }
)
"""Words whose presence in only one sentence of a pair counts as a negation
mismatch."""

PAIR_FEATURE_NAMES = (
    "word_overlap",
    "content_word_overlap",
    "bigram_overlap",
    "log1p_new_content_words",
    "log_length_ratio",
    "negation_mismatch",
    "new_number",
    "capitalised_overlap",
)
"""Names of the columns of :func:`pair_overlap_features`, in order."""


def clean_comment(text):
    """Return a comment lower-cased, without HTML tags, entities or U+FEFF.

    Many comments of the YouTube Spam Collection end with a byte-order mark and
    some contain markup such as ``<br />``; neither is a word.

    >>> clean_comment("Check <br />my channel&#39;s video\\ufeff")
    "check  my channel's video"
    """
    text = html.unescape(text.replace("\ufeff", ""))
    return _HTML_TAG.sub(" ", text).lower()


def display_comment(text, width=80):
    """Return a comment for display: one line, links and @handles masked, cut.

    The notebooks show comments to explain the labeling functions. Links and
    handles are replaced by ``<link>`` and ``@user`` so that channel names and
    accounts that spam advertises are not repeated.

    >>> display_comment("Follow @someone at https://example.com/x now\ufeff")
    'Follow @user at <link> now'
    """
    text = " ".join(html.unescape(text.replace("\ufeff", "")).split())
    text = _HANDLE.sub("@user", _LINK.sub("<link>", text))
    if len(text) > width:
        text = text[: width - 3] + "..."
    return text


def comment_vectorizer(max_features=1000, min_df=2):
    """Return an unfitted TF-IDF vectoriser for YouTube comments.

    Parameters
    ----------
    max_features : int, default=1000
        Vocabulary size cap: the most frequent terms are kept. The model has
        ``max_features + 1`` parameters, so its Hessian has that many rows.
    min_df : int, default=2
        Terms in fewer comments than this are dropped.

    Returns
    -------
    sklearn.feature_extraction.text.TfidfVectorizer
        Uses :func:`clean_comment`, unigrams, sublinear term frequency and
        unit-length rows. Call ``.transform(...).toarray()`` for the dense
        float64 matrix that the engine needs.
    """
    return TfidfVectorizer(
        preprocessor=clean_comment,
        max_features=max_features,
        min_df=min_df,
        sublinear_tf=True,
        dtype=np.float64,
    )


def _tokens(sentence):
    return _TOKEN.findall(sentence.lower().replace("n't", " not"))


def _fraction_in(items, reference):
    """Return the fraction of ``items`` found in ``reference``; 1.0 when empty."""
    if not items:
        return 1.0
    return float(np.mean([item in reference for item in items]))


def _overlap_row(text, hypothesis):
    text_tokens = _tokens(text)
    hypothesis_tokens = _tokens(hypothesis)
    text_words = set(text_tokens)
    content = [w for w in hypothesis_tokens if w not in ENGLISH_STOP_WORDS]
    text_bigrams = set(itertools.pairwise(text_tokens))
    hypothesis_bigrams = list(itertools.pairwise(hypothesis_tokens))
    numbers = {w for w in hypothesis_tokens if w[0].isdigit()}
    capitalised = [w.lower() for w in _CAPITALISED.findall(hypothesis)]
    negated_text = bool(NEGATION_WORDS & text_words)
    negated_hypothesis = bool(NEGATION_WORDS & set(hypothesis_tokens))
    return [
        _fraction_in(hypothesis_tokens, text_words),
        _fraction_in(content, text_words),
        _fraction_in(hypothesis_bigrams, text_bigrams),
        np.log1p(sum(w not in text_words for w in content)),
        np.log(max(len(hypothesis_tokens), 1) / max(len(text_tokens), 1)),
        float(negated_text != negated_hypothesis),
        float(bool(numbers - text_words)),
        _fraction_in(capitalised, text_words),
    ]


def pair_overlap_features(texts, hypotheses):
    """Compute lexical-overlap features of text/hypothesis pairs.

    Parameters
    ----------
    texts, hypotheses : sequence of str of length n_pairs

    Returns
    -------
    pandas.DataFrame of shape (n_pairs, 8)
        Columns :data:`PAIR_FEATURE_NAMES`, in order:

        - the fraction of hypothesis words, content words (not English stop
          words) and bigrams that also occur in the text;
        - ``log(1 + number of hypothesis content words absent from the
          text)`` and ``log(hypothesis length / text length)`` in words;
        - 1.0 when exactly one of the two contains a negation word
          (:data:`NEGATION_WORDS`), and 1.0 when the hypothesis has a number
          that the text lacks;
        - the fraction of the hypothesis's capitalised words that occur in the
          text.

        Fractions over an empty set are 1.0.

    Examples
    --------
    >>> features = pair_overlap_features(["The cat sat."], ["The cat did not sit."])
    >>> features.loc[0, ["word_overlap", "negation_mismatch"]].tolist()
    [0.4, 1.0]
    """
    if len(texts) != len(hypotheses):
        raise ValueError(
            f"texts has {len(texts)} entries but hypotheses has "
            f"{len(hypotheses)}; pass one hypothesis per text"
        )
    rows = [_overlap_row(t, h) for t, h in zip(texts, hypotheses)]
    return pd.DataFrame(rows, columns=list(PAIR_FEATURE_NAMES), dtype=np.float64)


class PairFeaturizer:
    """Features of RTE sentence pairs, fitted on the training pairs only.

    The features are the standardised :func:`pair_overlap_features`, one
    indicator per RTE task (CD, IE, IR, MT, PP, QA, RC) and a binary bag of
    words of the hypothesis.

    Parameters
    ----------
    max_hypothesis_words : int, default=300
        Vocabulary cap of the hypothesis bag of words.
    min_df : int, default=3
        Words in fewer training hypotheses than this are dropped.

    Attributes
    ----------
    feature_names : list of str
        One name per column of :meth:`transform`, available after :meth:`fit`.
    """

    def __init__(self, max_hypothesis_words=300, min_df=3):
        self.max_hypothesis_words = max_hypothesis_words
        self.min_df = min_df

    def fit(self, items):
        """Learn the scaling, the task list and the vocabulary from ``items``.

        Parameters
        ----------
        items : pandas.DataFrame
            Columns ``text``, ``hypothesis`` and ``task``, one row per pair.
        """
        overlap = pair_overlap_features(list(items["text"]), list(items["hypothesis"]))
        self.mean_ = overlap.mean().to_numpy()
        # Constant columns keep scale 1 so the division stays finite.
        scale = overlap.std(ddof=0).to_numpy()
        self.scale_ = np.where(scale > 0, scale, 1.0)
        self.tasks_ = sorted(items["task"].unique())
        self.vectorizer_ = CountVectorizer(
            binary=True,
            min_df=self.min_df,
            max_features=self.max_hypothesis_words,
            dtype=np.float64,
        ).fit(items["hypothesis"])
        words = self.vectorizer_.get_feature_names_out()
        self.feature_names = (
            list(PAIR_FEATURE_NAMES)
            + [f"task={task}" for task in self.tasks_]
            + [f"hypothesis_has={word}" for word in words]
        )
        return self

    def transform(self, items):
        """Return the feature matrix, ndarray of shape (n_pairs, n_features)."""
        overlap = pair_overlap_features(list(items["text"]), list(items["hypothesis"]))
        standardised = (overlap.to_numpy() - self.mean_) / self.scale_
        tasks = (items["task"].to_numpy()[:, None] == np.array(self.tasks_)).astype(
            np.float64
        )
        words = self.vectorizer_.transform(items["hypothesis"]).toarray()
        return np.hstack([standardised, tasks, words])

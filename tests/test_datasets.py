"""Tests for influence_kit.datasets: real data, lookup order, checksums, downloads.

The real files are read from ``shared/data`` beside the checkout. Downloads go
only to an HTTP server on 127.0.0.1 that the tests start and that serves copies
of those files. Every other mirror URL points at a closed loopback port.
"""

import functools
import gzip
import hashlib
import http.server
import math
import shutil
import socket
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from influence_kit.datasets import (
    ENV_VAR,
    DatasetChecksumError,
    DatasetDownloadError,
    DatasetNotFoundError,
    _fetch,
    crowd_rte,
    load_mnist,
    load_mnist_or_digits,
    load_rte_crowd,
    load_wrench_youtube,
    load_youtube_spam,
    mnist,
    mnist_subset,
    youtube_spam,
)

DATA_HOME = Path(__file__).resolve().parents[2] / "shared" / "data"
requires_data = pytest.mark.skipif(
    not DATA_HOME.is_dir(),
    reason=f"real data folder {DATA_HOME} is missing (expected beside the checkout)",
)

MNIST_TRAIN_CLASS_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_CLASS_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
LF_NAMES = [
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
]

# Each mirror setting, the sub-folder of the loopback server that replaces
# it, and the files that the setting's URLs must serve.
MIRRORS = {
    "mnist": (
        mnist,
        "MNIST_BASE_URLS",
        [*mnist._IMAGE_FILES.values(), *mnist._LABEL_FILES.values()],
    ),
    "youtube": (
        youtube_spam,
        "YOUTUBE_SPAM_BASE_URLS",
        list(youtube_spam._VIDEO_FILES.values()),
    ),
    "wrench": (
        youtube_spam,
        "WRENCH_YOUTUBE_BASE_URLS",
        list(youtube_spam._WRENCH_FILES.values()),
    ),
    "snow": (
        crowd_rte,
        "RTE_CROWD_BASE_URLS",
        [crowd_rte._ITEMS_FILE, crowd_rte._LABELS_FILE],
    ),
}


def closed_loopback_url():
    """Return a URL on a loopback port that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def flip_byte(path, offset=None):
    """Flip the lowest bit of one byte of `path`, by default a middle one."""
    content = bytearray(path.read_bytes())
    position = len(content) // 2 if offset is None else offset
    content[position] ^= 0x01
    path.write_bytes(bytes(content))


def copy_dataset(folder, destination):
    """Copy one dataset folder of DATA_HOME into the data folder `destination`."""
    shutil.copytree(DATA_HOME / folder, destination / folder)
    return destination


def sha256_of(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(autouse=True)
def user_cache(monkeypatch, tmp_path):
    """Hide the user's data folder, cache and the internet from every test."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    cache_folder = tmp_path / "cache"
    monkeypatch.setattr(_fetch, "cache_dir", lambda: cache_folder)
    for module, setting, _ in MIRRORS.values():
        monkeypatch.setattr(module, setting, [closed_loopback_url()])
    return cache_folder


class _RecordingHandler(http.server.SimpleHTTPRequestHandler):
    """Serve files, record each requested path, and log nothing."""

    def do_GET(self):
        self.server.requested_paths.append(self.path)
        super().do_GET()

    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """Serve copies of the real files on 127.0.0.1, laid out as on the mirrors.

    Yields the server's root folder, base URL and list of requested paths.
    """
    if not DATA_HOME.is_dir():
        pytest.skip(f"real data folder {DATA_HOME} is missing")
    root = tmp_path_factory.mktemp("mirror")
    for prefix, (_, _, data_files) in MIRRORS.items():
        for data_file in data_files:
            target = root / prefix / data_file.remote_path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(DATA_HOME / data_file.name, target)

    handler = functools.partial(_RecordingHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.requested_paths = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {
        "root": root,
        "url": f"http://127.0.0.1:{server.server_port}",
        "requested": server.requested_paths,
    }
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture(scope="module")
def mnist_train():
    if not DATA_HOME.is_dir():
        pytest.skip(f"real data folder {DATA_HOME} is missing")
    return load_mnist("train", data_home=DATA_HOME)


# MNIST on the real files


@requires_data
def test_mnist_train_counts_and_mean(mnist_train):
    images, labels = mnist_train
    assert images.shape == (60_000, 28, 28)
    assert images.dtype == np.uint8
    assert images.flags.writeable
    assert labels.shape == (60_000,)
    assert labels.dtype == np.int64
    assert np.bincount(labels).tolist() == MNIST_TRAIN_CLASS_COUNTS
    assert labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert round(float(images.mean()), 4) == 33.3184


@requires_data
def test_mnist_test_counts_and_mean():
    images, labels = load_mnist("test", data_home=DATA_HOME)
    assert images.shape == (10_000, 28, 28)
    assert np.bincount(labels).tolist() == MNIST_TEST_CLASS_COUNTS
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert round(float(images.mean()), 4) == 33.7912


@requires_data
def test_mnist_subset_default_is_ten_percent(mnist_train):
    images, labels = mnist_train
    subset = mnist_subset(data_home=DATA_HOME)
    assert subset.X.shape == (6_000, 784)
    assert subset.X.dtype == np.float64
    assert subset.y.dtype == np.int64
    assert subset.indices.dtype == np.int64
    assert subset.image_shape == (28, 28)
    assert subset.source == "MNIST train"
    assert subset.X.min() == 0.0
    assert subset.X.max() == 1.0
    np.testing.assert_array_equal(subset.y, labels[subset.indices])
    np.testing.assert_array_equal(
        subset.X, images[subset.indices].reshape(-1, 784) / 255.0
    )


@requires_data
def test_mnist_subset_stratified(mnist_train):
    _, labels = mnist_train
    subset = mnist_subset(fraction=0.1, seed=3, data_home=DATA_HOME)
    assert np.all(np.diff(subset.indices) > 0), "indices must be sorted and unique"
    counts = np.bincount(subset.y, minlength=10)
    expected = 0.1 * np.bincount(labels)
    assert counts.sum() == 6_000
    assert np.all(np.abs(counts - expected) < 1), (counts, expected)


@requires_data
def test_mnist_subset_reproducible_from_seed():
    first = mnist_subset(fraction=0.3, seed=7, split="test", data_home=DATA_HOME)
    again = mnist_subset(fraction=0.3, seed=7, split="test", data_home=DATA_HOME)
    other = mnist_subset(fraction=0.3, seed=8, split="test", data_home=DATA_HOME)
    np.testing.assert_array_equal(first.indices, again.indices)
    np.testing.assert_array_equal(first.X, again.X)
    assert first.indices.shape == other.indices.shape == (3_000,)
    assert not np.array_equal(first.indices, other.indices)


@requires_data
def test_mnist_subset_full_fraction_keeps_all_rows():
    subset = mnist_subset(fraction=1.0, split="test", data_home=DATA_HOME)
    np.testing.assert_array_equal(subset.indices, np.arange(10_000))
    assert subset.source == "MNIST test"


def test_stratified_indices_largest_remainder():
    # 10 rows in classes of 5, 3 and 2, and half of them is 5 rows. The quotas are
    # 2.5, 1.5 and 1.0, so the leftover row goes to class 0 (tie, smaller
    # label first).
    labels = np.repeat(np.arange(3), [5, 3, 2])
    indices = mnist._stratified_indices(labels, 0.5, seed=0)
    assert np.bincount(labels[indices], minlength=3).tolist() == [3, 1, 1]


def test_stratified_indices_rejects_empty_subset():
    labels = np.zeros(100, dtype=np.int64)
    with pytest.raises(ValueError, match=r"fraction=0\.001 selects no rows of the 100"):
        mnist._stratified_indices(labels, 0.001, seed=0)


# IDX parsing


def idx_bytes(magic, shape, n_values=None):
    """Build an IDX file of zeros, with `n_values` values when given."""
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in shape)
    n_values = math.prod(shape) if n_values is None else n_values
    return header + bytes(n_values)


def test_parse_idx_reads_shape_and_values():
    content = idx_bytes(2051, (2, 3, 4))
    array = mnist._parse_idx(content, 2051, "images.idx")
    assert array.shape == (2, 3, 4)
    assert array.dtype == np.uint8
    assert array.flags.writeable


def test_parse_idx_rejects_wrong_magic():
    content = idx_bytes(2049, (5,))
    with pytest.raises(ValueError, match="magic number is 2049, expected 2051"):
        mnist._parse_idx(content, 2051, "labels.idx")


def test_parse_idx_rejects_truncated_header():
    content = idx_bytes(2051, (60_000,), n_values=0)
    with pytest.raises(ValueError, match="8 bytes, fewer than the 16-byte header"):
        mnist._parse_idx(content, 2051, "short.idx")


def test_parse_idx_rejects_missing_magic():
    with pytest.raises(ValueError, match="3 bytes, too few for the 4-byte magic"):
        mnist._parse_idx(b"\x00\x00\x08", 2051, "short.idx")


def test_parse_idx_rejects_size_mismatch():
    content = idx_bytes(2051, (3, 28, 28), n_values=2 * 28 * 28)
    with pytest.raises(
        ValueError, match=r"shape \(3, 28, 28\), which needs 2368 bytes"
    ):
        mnist._parse_idx(content, 2051, "cut.idx")


# Checksums


@requires_data
def test_mnist_flipped_gzip_byte_rejected(tmp_path):
    data_home = copy_dataset("mnist", tmp_path / "data")
    flip_byte(data_home / "mnist" / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DatasetChecksumError, match="t10k-labels-idx1-ubyte") as caught:
        load_mnist("test", data_home=data_home)
    assert caught.value.expected == "27ae3e4e09519cfbb04c329615203637"


@requires_data
def test_mnist_altered_content_reports_both_md5s(tmp_path):
    data_home = copy_dataset("mnist", tmp_path / "data")
    path = data_home / "mnist" / "t10k-labels-idx1-ubyte.gz"
    content = bytearray(gzip.decompress(path.read_bytes()))
    content[100] = (content[100] + 1) % 10
    path.write_bytes(gzip.compress(bytes(content)))
    actual = hashlib.md5(bytes(content)).hexdigest()

    with pytest.raises(DatasetChecksumError) as caught:
        load_mnist("test", data_home=data_home)
    message = str(caught.value)
    assert "mnist/t10k-labels-idx1-ubyte.gz" in message
    assert "expected md5 27ae3e4e09519cfbb04c329615203637" in message
    assert f"got {actual}" in message
    assert caught.value.actual == actual


@requires_data
def test_mnist_other_gzip_wrapper_accepted(tmp_path):
    # Another mirror's .gz differs in header and deflate stream, so only the
    # decompressed bytes must match.
    data_home = copy_dataset("mnist", tmp_path / "data")
    path = data_home / "mnist" / "t10k-labels-idx1-ubyte.gz"
    original = path.read_bytes()
    path.write_bytes(gzip.compress(gzip.decompress(original), compresslevel=1, mtime=1))
    assert path.read_bytes() != original

    _, labels = load_mnist("test", data_home=data_home)
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


@requires_data
def test_flipped_byte_raises_and_is_not_used(tmp_path, monkeypatch):
    data_home = copy_dataset("wrench_youtube_spam_lf", tmp_path / "data")
    path = data_home / "wrench_youtube_spam_lf" / "valid.json"
    flip_byte(path)
    # A good copy later in the search order must not be used instead.
    monkeypatch.setenv(ENV_VAR, str(DATA_HOME))

    with pytest.raises(DatasetChecksumError) as caught:
        load_wrench_youtube("valid", data_home=data_home)
    message = str(caught.value)
    expected = "278b947d748b4b921b2dd60918318f7ee817584d85a719d0db6f5365d6e87b01"
    assert "wrench_youtube_spam_lf/valid.json" in message
    assert str(path) in message
    assert f"expected sha256 {expected}" in message
    assert f"got {sha256_of(path)}" in message


# Lookup order and the not-found error

LOADERS = {
    "mnist": lambda **kwargs: load_mnist("test", **kwargs),
    "youtube_spam": lambda **kwargs: load_youtube_spam(**kwargs),
    "wrench": lambda **kwargs: load_wrench_youtube("test", **kwargs),
    "rte": lambda **kwargs: load_rte_crowd(**kwargs),
}


@pytest.mark.parametrize("loader", LOADERS.values(), ids=LOADERS.keys())
def test_not_found_without_download(loader, user_cache):
    with pytest.raises(DatasetNotFoundError) as caught:
        loader(download=False)
    message = str(caught.value)
    assert isinstance(caught.value, FileNotFoundError)
    assert not isinstance(caught.value, DatasetDownloadError)
    assert "download=False" in message
    assert "data_home argument: not given" in message
    assert f"{ENV_VAR}: not set" in message
    assert str(user_cache) in message
    assert f"set the environment variable {ENV_VAR}" in message
    assert "pass download=True" in message


def test_not_found_lists_every_folder(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = tmp_path / "nowhere"
    monkeypatch.setenv(ENV_VAR, str(missing))
    with pytest.raises(DatasetNotFoundError) as caught:
        load_rte_crowd(data_home=empty, download=False)
    message = str(caught.value)
    item_path = empty / "snow2008_crowd" / "rte" / "annotated_test.xml"
    assert f"data_home argument: {item_path} (missing)" in message
    assert f"{ENV_VAR}: {missing} (folder does not exist)" in message


@requires_data
def test_env_var_is_honoured(monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(DATA_HOME))
    comments = load_youtube_spam(download=False)
    assert len(comments) == 1_956


@requires_data
def test_missing_in_data_home_falls_through_to_env(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv(ENV_VAR, str(DATA_HOME))
    rte = load_rte_crowd(data_home=empty, download=False)
    assert len(rte.items) == 800


@requires_data
def test_data_home_searched_before_env(tmp_path, monkeypatch):
    data_home = copy_dataset("youtube_spam", tmp_path / "data")
    flip_byte(data_home / "youtube_spam" / "Youtube01-Psy.csv")
    monkeypatch.setenv(ENV_VAR, str(DATA_HOME))
    with pytest.raises(DatasetChecksumError, match=str(data_home)):
        load_youtube_spam(data_home=data_home, download=False)


@requires_data
def test_env_searched_before_cache(user_cache, monkeypatch):
    copy_dataset("youtube_spam", user_cache)
    flip_byte(user_cache / "youtube_spam" / "Youtube01-Psy.csv")
    monkeypatch.setenv(ENV_VAR, str(DATA_HOME))
    assert len(load_youtube_spam(download=False)) == 1_956


@requires_data
def test_cache_used_when_nothing_else(user_cache):
    copy_dataset("youtube_spam", user_cache)
    assert len(load_youtube_spam(download=False)) == 1_956


def test_data_home_type_checked():
    with pytest.raises(TypeError, match="data_home must be a folder path.*got 42"):
        load_youtube_spam(data_home=42)


def test_download_type_checked():
    with pytest.raises(TypeError, match="download must be True or False, got 'no'"):
        load_rte_crowd(download="no")


# Downloads from the loopback mirror


@requires_data
def test_download_mnist_tries_next_mirror(mirror, user_cache, monkeypatch):
    dead = closed_loopback_url()
    monkeypatch.setattr(mnist, "MNIST_BASE_URLS", [dead, mirror["url"] + "/mnist/"])
    mirror["requested"].clear()

    images, labels = load_mnist("test")
    assert images.shape == (10_000, 28, 28)
    assert np.bincount(labels).tolist() == MNIST_TEST_CLASS_COUNTS
    assert mirror["requested"] == [
        "/mnist/t10k-images-idx3-ubyte.gz",
        "/mnist/t10k-labels-idx1-ubyte.gz",
    ]
    assert sorted(p.name for p in (user_cache / "mnist").iterdir()) == [
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]

    # The second call reads the verified copies in the cache.
    monkeypatch.setattr(mnist, "MNIST_BASE_URLS", [dead])
    _, cached_labels = load_mnist("test", download=False)
    np.testing.assert_array_equal(cached_labels, labels)
    assert len(mirror["requested"]) == 2


@requires_data
@pytest.mark.parametrize(
    ("prefix", "loader", "n_rows"),
    [
        ("youtube", lambda: load_youtube_spam(), 1_956),
        ("wrench", lambda: load_wrench_youtube("train").texts, 1_586),
        ("snow", lambda: load_rte_crowd().labels, 8_000),
    ],
    ids=["youtube_spam", "wrench", "rte"],
)
def test_download_into_cache(mirror, user_cache, monkeypatch, prefix, loader, n_rows):
    module, setting, data_files = MIRRORS[prefix]
    monkeypatch.setattr(module, setting, [f"{mirror['url']}/{prefix}/"])
    mirror["requested"].clear()

    assert len(loader()) == n_rows
    requested = {f"/{prefix}/{data_file.remote_path}" for data_file in data_files}
    assert set(mirror["requested"]) <= requested
    for path in mirror["requested"]:
        name = next(f.name for f in data_files if path.endswith(f.remote_path))
        assert sha256_of(user_cache / name) == sha256_of(DATA_HOME / name)


@requires_data
def test_download_rejects_corrupt_copy(mirror, user_cache, monkeypatch):
    bad = mirror["root"] / "bad-wrench"
    bad.mkdir(exist_ok=True)
    shutil.copyfile(mirror["root"] / "wrench" / "valid.json", bad / "valid.json")
    flip_byte(bad / "valid.json")
    bad_url = f"{mirror['url']}/bad-wrench/"
    monkeypatch.setattr(youtube_spam, "WRENCH_YOUTUBE_BASE_URLS", [bad_url])

    with pytest.raises(DatasetDownloadError) as caught:
        load_wrench_youtube("valid")
    message = str(caught.value)
    assert f"{bad_url}valid.json: DatasetChecksumError" in message
    assert "Checksum mismatch" in message
    assert list((user_cache / "wrench_youtube_spam_lf").iterdir()) == []

    # With a good mirror after the bad one, the good copy is used and cached.
    good_url = f"{mirror['url']}/wrench/"
    monkeypatch.setattr(youtube_spam, "WRENCH_YOUTUBE_BASE_URLS", [bad_url, good_url])
    assert len(load_wrench_youtube("valid").texts) == 120
    assert [p.name for p in (user_cache / "wrench_youtube_spam_lf").iterdir()] == [
        "valid.json"
    ]


@requires_data
def test_download_failure_lists_attempts(mirror, monkeypatch):
    dead = closed_loopback_url()
    absent = f"{mirror['url']}/absent/"
    monkeypatch.setattr(crowd_rte, "RTE_CROWD_BASE_URLS", [dead, absent])
    with pytest.raises(DatasetDownloadError) as caught:
        load_rte_crowd()
    message = str(caught.value)
    assert isinstance(caught.value, DatasetNotFoundError)
    assert f"{dead}snow2008_mturk_data_with_orig_files_assembled_201904" in message
    assert "ConnectionError" in message
    assert "404" in message
    assert f"set the environment variable {ENV_VAR}" in message


def test_mirror_setting_must_be_list(monkeypatch):
    url = "http://127.0.0.1:9/"
    monkeypatch.setattr(crowd_rte, "RTE_CROWD_BASE_URLS", url)
    with pytest.raises(TypeError, match="Wrap a single URL in a list"):
        load_rte_crowd()


def test_download_reports_unwritable_cache(tmp_path, monkeypatch):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache folder's parent should be")
    monkeypatch.setattr(_fetch, "cache_dir", lambda: blocker / "cache")
    with pytest.raises(DatasetDownloadError, match="failed to create the cache folder"):
        load_rte_crowd()


def test_download_without_mirrors_explains(monkeypatch):
    monkeypatch.setattr(crowd_rte, "RTE_CROWD_BASE_URLS", [])
    with pytest.raises(DatasetDownloadError, match="no download mirror is configured"):
        load_rte_crowd()


# The notebook fallback


@requires_data
def test_mnist_or_digits_prefers_mnist():
    subset, message = load_mnist_or_digits(fraction=0.1, seed=0, data_home=DATA_HOME)
    assert subset.X.shape == (6_000, 784)
    assert subset.source == "MNIST train"
    assert message.startswith("Using MNIST: 6,000 of the 60,000 training images")
    assert str(DATA_HOME / "mnist") in message


def test_mnist_or_digits_falls_back_offline(user_cache):
    subset, message = load_mnist_or_digits(download=False)
    assert subset.X.shape == (1_797, 64)
    assert subset.X.dtype == np.float64
    assert subset.X.min() == 0.0
    assert subset.X.max() == 1.0
    assert subset.y.dtype == np.int64
    assert subset.image_shape == (8, 8)
    assert subset.source == "scikit-learn digits"
    assert message.startswith("Using scikit-learn's bundled digits")
    assert "was not found and download=False" in message
    assert str(user_cache) in message


def test_mnist_or_digits_reports_download_failure():
    dead = mnist.MNIST_BASE_URLS[0]
    subset, message = load_mnist_or_digits()
    assert subset.source == "scikit-learn digits"
    assert "could not be downloaded" in message
    assert f"{dead}train-images-idx3-ubyte.gz: ConnectionError" in message


@requires_data
def test_mnist_or_digits_raises_on_damaged_file(tmp_path):
    data_home = copy_dataset("mnist", tmp_path / "data")
    flip_byte(data_home / "mnist" / "train-labels-idx1-ubyte.gz")
    with pytest.raises(DatasetChecksumError):
        load_mnist_or_digits(data_home=data_home)


# Argument checks


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda: load_mnist("validation"),
            "split='validation' is not a valid MNIST split. Use one of 'train', 'test'",
        ),
        (
            lambda: mnist_subset(split="dev"),
            "split='dev' is not a valid MNIST split",
        ),
        (
            lambda: load_wrench_youtube("dev"),
            (
                "split='dev' is not a valid WRENCH YouTube split. "
                "Use one of 'train', 'valid', 'test'"
            ),
        ),
    ],
    ids=["load_mnist", "mnist_subset", "wrench"],
)
def test_unknown_split_rejected(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("fraction", [0, -0.1, 1.5, float("nan")])
@pytest.mark.parametrize("function", [mnist_subset, load_mnist_or_digits])
def test_fraction_out_of_range_rejected(function, fraction):
    with pytest.raises(ValueError, match=r"fraction=.* is outside \(0, 1\]"):
        function(fraction=fraction, download=False)


@pytest.mark.parametrize("fraction", ["0.1", True, None])
def test_fraction_type_rejected(fraction):
    with pytest.raises(TypeError, match="fraction must be a real number in"):
        mnist_subset(fraction=fraction, download=False)


@pytest.mark.parametrize("seed", [1.5, "0", None, True])
@pytest.mark.parametrize("function", [mnist_subset, load_mnist_or_digits])
def test_seed_type_rejected(function, seed):
    with pytest.raises(TypeError, match="seed must be a non-negative integer"):
        function(seed=seed, download=False)


def test_negative_seed_rejected():
    with pytest.raises(ValueError, match="seed=-1 is negative"):
        mnist_subset(seed=-1, download=False)


def test_numpy_integer_seed_accepted():
    # Validation passes, so the next failure is the missing data.
    with pytest.raises(DatasetNotFoundError):
        mnist_subset(seed=np.int64(3), download=False)


# YouTube spam


@requires_data
def test_youtube_spam_counts():
    comments = load_youtube_spam(data_home=DATA_HOME)
    assert list(comments.columns) == ["COMMENT_ID", "DATE", "CONTENT", "CLASS", "VIDEO"]
    assert len(comments) == 1_956
    assert comments["CLASS"].dtype == np.int64
    assert comments["CLASS"].value_counts().to_dict() == {1: 1_005, 0: 951}
    spam_ham = comments.groupby("VIDEO", sort=False)["CLASS"].agg(["sum", "size"])
    assert spam_ham.to_dict("index") == {
        "Psy": {"sum": 175, "size": 350},
        "KatyPerry": {"sum": 175, "size": 350},
        "LMFAO": {"sum": 236, "size": 438},
        "Eminem": {"sum": 245, "size": 448},
        "Shakira": {"sum": 174, "size": 370},
    }
    assert comments["DATE"].isna().sum() == 245
    assert comments["CONTENT"].notna().all()
    assert comments["CONTENT"].nunique() == 1_760


@requires_data
def test_youtube_spam_has_no_author():
    comments = load_youtube_spam(data_home=DATA_HOME)
    assert "AUTHOR" not in comments.columns
    assert not any("author" in column.lower() for column in comments.columns)


# WRENCH YouTube


@requires_data
@pytest.mark.parametrize(
    ("split", "n_rows", "n_spam", "n_covered"),
    [("train", 1_586, 831, 1_391), ("valid", 120, 56, 105), ("test", 250, 118, 232)],
)
def test_wrench_split_counts(split, n_rows, n_spam, n_covered):
    data = load_wrench_youtube(split, data_home=DATA_HOME)
    assert data.split == split
    assert len(data.texts) == n_rows
    assert all(isinstance(text, str) for text in data.texts)
    assert data.labels.shape == (n_rows,)
    assert data.labels.dtype == np.int64
    assert int(data.labels.sum()) == n_spam
    assert data.weak_labels.shape == (n_rows, 10)
    assert data.weak_labels.dtype == np.int64
    assert set(np.unique(data.weak_labels)) <= {-1, 0, 1}
    assert int((data.weak_labels != -1).any(axis=1).sum()) == n_covered
    assert list(data.lf_names) == LF_NAMES


@requires_data
def test_wrench_texts_agree_with_uci_files():
    comments = load_youtube_spam(data_home=DATA_HOME)
    classes_by_text = comments.groupby("CONTENT")["CLASS"].agg(set).to_dict()
    for split in ("train", "valid", "test"):
        data = load_wrench_youtube(split, data_home=DATA_HOME)
        for text, label in zip(data.texts, data.labels):
            assert label in classes_by_text[text], (split, text)


# RTE crowd labels


@requires_data
def test_rte_crowd_counts_and_joins():
    rte = load_rte_crowd(data_home=DATA_HOME)
    items, labels = rte.items, rte.labels
    assert list(items.columns) == ["orig_id", "text", "hypothesis", "gold", "task"]
    assert list(labels.columns) == ["orig_id", "worker_id", "response", "gold"]
    assert len(items) == 800
    assert items["orig_id"].is_unique
    assert len(labels) == 8_000
    assert labels["worker_id"].nunique() == 164
    assert items["gold"].value_counts().to_dict() == {1: 400, 0: 400}
    assert (labels.groupby("orig_id").size() == 10).all()
    assert set(labels["response"].unique()) == {0, 1}

    gold_by_item = items.set_index("orig_id")["gold"]
    assert set(labels["orig_id"]) == set(gold_by_item.index)
    np.testing.assert_array_equal(
        labels["gold"].to_numpy(), gold_by_item.loc[labels["orig_id"]].to_numpy()
    )


@requires_data
def test_rte_majority_vote_accuracy():
    rte = load_rte_crowd(data_home=DATA_HOME)
    by_item = rte.labels.groupby("orig_id").agg(
        share=("response", "mean"), gold=("gold", "first")
    )
    # A 5-5 tie counts as a vote for 0.
    majority = (by_item["share"] > 0.5).astype(int)
    assert round(float((majority == by_item["gold"]).mean()), 3) == 0.919


@requires_data
def test_rte_text_entities_decoded():
    items = load_rte_crowd(data_home=DATA_HOME).items
    text = items["text"] + " " + items["hypothesis"]
    for entity in ("&apos;", "&quot;", "&amp;", "&#163;"):
        assert not text.str.contains(entity, regex=False).any(), entity
    assert text.str.contains("'", regex=False).any()
    assert text.str.contains("£", regex=False).any()
    assert Counter(items["task"]) == {
        "CD": 150,
        "RC": 140,
        "QA": 130,
        "IE": 120,
        "MT": 120,
        "IR": 90,
        "PP": 50,
    }

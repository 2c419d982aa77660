"""MNIST handwritten digits, a stratified subset of them, and a small fallback.

MNIST (LeCun, Cortes and Burges) has 60,000 training and 10,000 test images of
28 x 28 grey pixels with values 0 to 255, labelled with the digit 0 to 9. It is
distributed as four gzip-compressed IDX files. Cite Y. LeCun, L. Bottou,
Y. Bengio and P. Haffner, "Gradient-based learning applied to document
recognition", Proc. IEEE 86(11), 1998.

The files are located, verified and downloaded as described in
:mod:`influence_kit.datasets._fetch`. The checksums below are those of the
decompressed IDX files. The MD5s are the ones published for the original
files; only the decompressed bytes are compared, because the gzip wrappers
differ between mirrors.
"""

import numbers
import struct
from dataclasses import dataclass

import numpy as np

from ._fetch import DataFile, DatasetNotFoundError, check_choice, fetch

MNIST_BASE_URLS = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
]
"""Download mirrors, tried in order. Each contains the four files under their
usual names. Replace the list, for example with a local server, to use another
mirror."""

SPLITS = ("train", "test")

_IMAGE_FILES = {
    "train": DataFile(
        name="mnist/train-images-idx3-ubyte.gz",
        remote_path="train-images-idx3-ubyte.gz",
        md5="6bbc9ace898e44ae57da46a324031adb",
        sha256="ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        gzip=True,
    ),
    "test": DataFile(
        name="mnist/t10k-images-idx3-ubyte.gz",
        remote_path="t10k-images-idx3-ubyte.gz",
        md5="2646ac647ad5339dbf082846283269ea",
        sha256="0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        gzip=True,
    ),
}
_LABEL_FILES = {
    "train": DataFile(
        name="mnist/train-labels-idx1-ubyte.gz",
        remote_path="train-labels-idx1-ubyte.gz",
        md5="a25bea736e30d166cdddb491f175f624",
        sha256="65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        gzip=True,
    ),
    "test": DataFile(
        name="mnist/t10k-labels-idx1-ubyte.gz",
        remote_path="t10k-labels-idx1-ubyte.gz",
        md5="27ae3e4e09519cfbb04c329615203637",
        sha256="ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        gzip=True,
    ),
}

# An IDX magic number is two zero bytes, a type code (0x08 for unsigned bytes)
# and the number of dimensions.
_IMAGES_MAGIC = 0x0803  # 2051: unsigned bytes, 3 dimensions
_LABELS_MAGIC = 0x0801  # 2049: unsigned bytes, 1 dimension


@dataclass(repr=False)
class ImageSubset:
    """Flattened images with their labels and their rows in the source split.

    Attributes
    ----------
    X : ndarray of shape (n_samples, n_features), dtype float64
        Pixel values scaled to [0, 1], one flattened image per row.
        ``n_features`` is 784 for MNIST and 64 for scikit-learn's digits.
    y : ndarray of shape (n_samples,), dtype int64
        Digit labels 0 to 9.
    indices : ndarray of shape (n_samples,), dtype int64
        Row of each sample in the full split, in increasing order.
    image_shape : tuple of int
        Shape of one image, ``(28, 28)`` or ``(8, 8)``, for
        ``X[i].reshape(image_shape)``.
    source : str
        Which data the rows come from, ``"MNIST train"``, ``"MNIST test"`` or
        ``"scikit-learn digits"``.
    """

    X: np.ndarray
    y: np.ndarray
    indices: np.ndarray
    image_shape: tuple
    source: str

    def __repr__(self):
        return (
            f"ImageSubset(source={self.source!r}, n_samples={self.X.shape[0]}, "
            f"n_features={self.X.shape[1]}, image_shape={self.image_shape})"
        )


def load_mnist(split="train", data_home=None, download=True):
    """Load one MNIST split as uint8 images and int64 labels.

    Parameters
    ----------
    split : {"train", "test"}, default="train"
        The 60,000 training images or the 10,000 test images, in the standard
        order.
    data_home : str or os.PathLike or None, default=None
        Folder that contains ``mnist/``, searched first. The other places are
        the folder in the environment variable ``INFLUENCE_KIT_DATA`` and the
        user cache.
    download : bool, default=True
        Whether to download the files into the user cache when no local copy
        exists.

    Returns
    -------
    images : ndarray of shape (n_samples, 28, 28), dtype uint8
        Grey levels 0 (background) to 255.
    labels : ndarray of shape (n_samples,), dtype int64
        Digits 0 to 9.

    Raises
    ------
    ValueError
        If `split` is not "train" or "test".
    DatasetNotFoundError
        If the files are not found and `download` is False, or every download
        failed (then a DatasetDownloadError).
    DatasetChecksumError
        If a file found does not match the published MD5.

    Examples
    --------
    >>> images, labels = load_mnist("test")  # doctest: +SKIP
    >>> images.shape, labels[:5]  # doctest: +SKIP
    ((10000, 28, 28), array([7, 2, 1, 0, 4]))
    """
    split = check_choice("split", split, SPLITS, "MNIST split")
    images, labels, _ = _read_split(split, data_home, download)
    return images, labels


def mnist_subset(fraction=0.1, seed=0, split="train", data_home=None, download=True):
    r"""Draw a class-stratified random subset of an MNIST split.

    Parameters
    ----------
    fraction : float, default=0.1
        Share of the split to keep, in (0, 1]. The default keeps 6,000 of the
        60,000 training images.
    seed : int, default=0
        Seed of the random draw. The same seed gives the same rows.
    split : {"train", "test"}, default="train"
        The split to draw from.
    data_home : str or os.PathLike or None, default=None
        Folder that contains ``mnist/``, as in :func:`load_mnist`.
    download : bool, default=True
        Whether to download the files when no local copy exists.

    Returns
    -------
    ImageSubset
        ``X`` of shape (n_samples, 784) with pixels divided by 255, ``y`` of
        shape (n_samples,), and ``indices``, the sorted rows of the split.

    Raises
    ------
    TypeError
        If `fraction` is not a real number or `seed` is not an integer.
    ValueError
        If `fraction` is outside (0, 1], `seed` is negative, `split` is
        unknown, or `fraction` is so small that no row is selected.

    Notes
    -----
    With :math:`n` rows in the split and :math:`n_c` of class :math:`c`, the
    subset has :math:`m = \operatorname{round}(\text{fraction} \cdot n)` rows.
    Class :math:`c` gets :math:`\lfloor m n_c / n \rfloor` of them, and the
    rows left over go one each to the classes with the largest remainders
    (ties to the smaller digit). Within a class, rows are drawn without
    replacement by ``numpy.random.default_rng(seed)``, so a given seed gives
    the same rows for a given NumPy version.

    Examples
    --------
    >>> subset = mnist_subset(fraction=0.1, seed=0)  # doctest: +SKIP
    >>> subset.X.shape, subset.X.dtype  # doctest: +SKIP
    ((6000, 784), dtype('float64'))
    """
    fraction = _check_fraction(fraction)
    seed = _check_seed(seed)
    split = check_choice("split", split, SPLITS, "MNIST split")
    images, labels, _ = _read_split(split, data_home, download)
    return _subset(images, labels, fraction, seed, f"MNIST {split}")


def load_mnist_or_digits(fraction=0.1, seed=0, data_home=None, download=True):
    """Load a stratified MNIST training subset, or scikit-learn's digits.

    Meant for notebooks that must run without MNIST: when the MNIST files are
    neither found nor downloadable, this returns all 1,797 of scikit-learn's
    bundled 8 x 8 handwritten digits instead of raising.

    Parameters
    ----------
    fraction : float, default=0.1
        Share of the MNIST training split to keep, in (0, 1], as in
        :func:`mnist_subset`. The digits fallback always returns all rows.
    seed : int, default=0
        Seed of the MNIST draw.
    data_home : str or os.PathLike or None, default=None
        Folder that contains ``mnist/``, as in :func:`load_mnist`.
    download : bool, default=True
        Whether to try downloading MNIST when no local copy exists. Offline,
        the fallback comes after every mirror has failed. Where the network
        drops packets instead of refusing connections, each mirror takes the
        30-second download timeout to fail.

    Returns
    -------
    subset : ImageSubset
        MNIST rows with ``X`` of shape (n_samples, 784), or the digits with
        ``X`` of shape (1797, 64) scaled from 0..16 to [0, 1]. ``source`` and
        ``image_shape`` show which.
    message : str
        One or more lines that say which data was loaded and, for the
        fallback, why MNIST was not used.

    Raises
    ------
    TypeError, ValueError
        If `fraction` or `seed` is invalid, whether or not MNIST is present.
    DatasetChecksumError
        If a local MNIST file is damaged. This is not treated as absence,
        because the file needs fixing.

    Examples
    --------
    >>> subset, message = load_mnist_or_digits(download=False)
    >>> subset.X.shape[1] == subset.image_shape[0] * subset.image_shape[1]
    True
    """
    fraction = _check_fraction(fraction)
    seed = _check_seed(seed)
    try:
        images, labels, folder = _read_split("train", data_home, download)
    except DatasetNotFoundError as error:
        return _digits(), (
            "Using scikit-learn's bundled digits (1,797 images of 8 x 8 pixels, "
            f"all rows) because MNIST is not available.\n{error}"
        )

    subset = _subset(images, labels, fraction, seed, "MNIST train")
    message = (
        f"Using MNIST: {subset.y.shape[0]:,} of the {labels.shape[0]:,} training "
        f"images (fraction {fraction:g}, stratified by class, seed {seed}), read "
        f"from {folder}."
    )
    return subset, message


def _read_split(split, data_home, download):
    """Fetch and parse one split, and return the folder its images came from."""
    images_file = fetch(_IMAGE_FILES[split], MNIST_BASE_URLS, data_home, download)
    labels_file = fetch(_LABEL_FILES[split], MNIST_BASE_URLS, data_home, download)
    images = _parse_idx(images_file.content, _IMAGES_MAGIC, str(images_file.path))
    labels = _parse_idx(labels_file.content, _LABELS_MAGIC, str(labels_file.path))
    return images, labels.astype(np.int64), images_file.path.parent


def _parse_idx(content, magic, source):
    """Parse the bytes of an uncompressed IDX file of unsigned bytes.

    Parameters
    ----------
    content : bytes
        The whole file: a big-endian header of 4-byte integers (the magic
        number, then one size per dimension), then the values, one byte each.
    magic : int
        The expected magic number, 2051 for images or 2049 for labels.
    source : str
        Path of the file, used in error messages.

    Returns
    -------
    ndarray of dtype uint8
        A writable array with the shape given in the header.

    Raises
    ------
    ValueError
        If the magic number differs from `magic`, or the file is shorter than
        its header or its length does not match the header's sizes.
    """
    if len(content) < 4:
        raise ValueError(
            f"{source} is not a valid IDX file: it has {len(content)} bytes, too "
            "few for the 4-byte magic number. Replace it with an intact copy."
        )
    (found_magic,) = struct.unpack_from(">I", content)
    if found_magic != magic:
        raise ValueError(
            f"{source} is not a valid IDX file of this kind: its magic number is "
            f"{found_magic}, expected {magic}. Check that the images and labels "
            "files are not swapped, and replace a damaged file."
        )
    n_dims = magic & 0xFF
    header_size = 4 * (1 + n_dims)
    if len(content) < header_size:
        raise ValueError(
            f"{source} is not a valid IDX file: it has {len(content)} bytes, "
            f"fewer than the {header_size}-byte header that magic number {magic} "
            "implies. Replace it with an intact copy."
        )
    shape = struct.unpack_from(f">{n_dims}I", content, offset=4)
    expected_size = header_size + int(np.prod(shape, dtype=np.int64))
    if len(content) != expected_size:
        raise ValueError(
            f"{source} is not a valid IDX file: its header gives shape "
            f"{tuple(shape)}, which needs {expected_size} bytes, but the file has "
            f"{len(content)} bytes. Replace it with an intact copy."
        )
    values = np.frombuffer(content, dtype=np.uint8, offset=header_size)
    return values.reshape(shape).copy()


def _check_fraction(fraction):
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real):
        raise TypeError(
            f"fraction must be a real number in (0, 1], got {fraction!r} of type "
            f"{type(fraction).__name__}. Pass for example 0.1 for 10%."
        )
    if not 0 < fraction <= 1:
        raise ValueError(
            f"fraction={fraction!r} is outside (0, 1]. Pass the share of the split "
            "to keep, for example 0.1 for 10%."
        )
    return float(fraction)


def _check_seed(seed):
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(
            f"seed must be a non-negative integer, got {seed!r} of type "
            f"{type(seed).__name__}. Pass for example seed=0."
        )
    if seed < 0:
        raise ValueError(f"seed={seed!r} is negative. Pass a non-negative integer.")
    return int(seed)


def _subset(images, labels, fraction, seed, source):
    """Build the ImageSubset of a stratified draw, as in mnist_subset's Notes."""
    indices = _stratified_indices(labels, fraction, seed)
    n_samples = indices.shape[0]
    X = images[indices].reshape(n_samples, -1).astype(np.float64) / 255.0
    return ImageSubset(
        X=X,
        y=labels[indices],
        indices=indices,
        image_shape=tuple(images.shape[1:]),
        source=source,
    )


def _stratified_indices(labels, fraction, seed):
    """Draw sorted row indices with per-class sizes by largest remainder."""
    n_rows = labels.shape[0]
    n_selected = round(fraction * n_rows)
    if n_selected == 0:
        raise ValueError(
            f"fraction={fraction!r} selects no rows of the {n_rows:,} in the "
            f"split. Pass at least {1 / n_rows:.3g}."
        )

    classes, class_counts = np.unique(labels, return_counts=True)
    quotas = n_selected * class_counts / n_rows
    sizes = np.floor(quotas).astype(np.int64)
    shortfall = n_selected - int(sizes.sum())
    by_remainder = np.argsort(-(quotas - sizes), kind="stable")
    sizes[by_remainder[:shortfall]] += 1

    rng = np.random.default_rng(seed)
    chosen = [
        rng.choice(np.flatnonzero(labels == label), size=size, replace=False)
        for label, size in zip(classes, sizes)
    ]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def _digits():
    """Return all of scikit-learn's bundled 8 x 8 digits as an ImageSubset."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    n_samples = digits.target.shape[0]
    return ImageSubset(
        X=digits.data.astype(np.float64) / 16.0,
        y=digits.target.astype(np.int64),
        indices=np.arange(n_samples, dtype=np.int64),
        image_shape=(8, 8),
        source="scikit-learn digits",
    )

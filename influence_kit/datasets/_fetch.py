"""Locate, verify and download the files behind the dataset loaders.

Each loader names the files it needs by their path inside a data folder, for
example ``mnist/train-images-idx3-ubyte.gz``. :func:`fetch` looks for that path
in these places, in this order, and uses the first copy it finds:

1. the ``data_home`` argument of the loader, when it is not None.
2. the folder named by the environment variable ``INFLUENCE_KIT_DATA``, when it
   is set and not empty.
3. the user cache, ``pooch.os_cache("influence-kit")``, which is
   ``~/.cache/influence-kit`` on Linux.
4. the public source, when the loader's ``download`` argument is True. The
   mirrors are tried in order and the first copy that passes the checksum is
   saved in the user cache, so the next call finds it in step 3.

The folders of steps 1 to 3 share one layout, with one sub-folder per dataset::

    mnist/                    train-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz, ...
    youtube_spam/             Youtube01-Psy.csv, ..., Youtube05-Shakira.csv
    wrench_youtube_spam_lf/   train.json, valid.json, test.json
    snow2008_crowd/           all_collected_data/rte.standardized.tsv,
                              rte/annotated_test.xml

A folder that lacks the file is skipped. A file that is present but fails its
checksum raises :class:`DatasetChecksumError` and ends the search, so a damaged
copy is never used and never silently replaced by a copy from a later place.

Every file is verified before use. Plain files are checked by the SHA-256 of
their bytes. Gzip files (MNIST) are checked by the MD5 and SHA-256 of their
decompressed bytes, because mirrors wrap the same content in different gzip
headers. A download is written to a temporary file in the cache folder and
renamed into place only after it passes the same check.

NOTE: the public URLs in the loader modules come from the datasets' provenance
records. The test suite exercises downloads only against a loopback HTTP
server, so a file that moves upstream surfaces as a
:class:`DatasetDownloadError` naming the URL.
"""

import gzip
import hashlib
import logging
import os
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pooch

ENV_VAR = "INFLUENCE_KIT_DATA"
DOWNLOAD_TIMEOUT = 30
"""Seconds to wait for a mirror to connect or to send the next chunk."""

logger = logging.getLogger(__name__)


class DatasetNotFoundError(FileNotFoundError):
    """Raised when a data file is in no searched folder and was not downloaded."""


class DatasetDownloadError(DatasetNotFoundError):
    """Raised when a data file is missing locally and every download failed."""


class DatasetChecksumError(ValueError):
    """Raised when a data file's content does not match its published checksum.

    Parameters
    ----------
    message : str
        The error message.
    source : str
        The path or URL of the rejected file.
    algorithm : str
        ``"md5"`` or ``"sha256"``.
    expected : str
        The published hex digest.
    actual : str or None
        The hex digest of the content, or None when a gzip file could not be
        decompressed.
    """

    def __init__(self, message, *, source, algorithm, expected, actual):
        super().__init__(message)
        self.source = source
        self.algorithm = algorithm
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True)
class DataFile:
    """One file of a dataset, with its local path, mirror path and checksums.

    Attributes
    ----------
    name : str
        Path inside a data folder, with forward slashes, for example
        ``"mnist/train-images-idx3-ubyte.gz"``.
    remote_path : str
        Path appended to each mirror's base URL.
    sha256 : str
        SHA-256 hex digest of the content, after decompression when `gzip` is
        True.
    md5 : str or None, default=None
        MD5 hex digest of the content, checked before `sha256` when given.
    gzip : bool, default=False
        Whether the file is gzip-compressed. The digests then apply to the
        decompressed bytes.
    """

    name: str
    remote_path: str
    sha256: str
    md5: str | None = None
    gzip: bool = False


@dataclass(frozen=True)
class FetchedFile:
    """A verified data file and where it came from.

    Attributes
    ----------
    path : Path
        The local file that was read.
    content : bytes
        The verified content, decompressed when the file is gzip-compressed.
    origin : str
        Which place supplied the file, for example ``"data_home argument"`` or
        ``"download from https://..."``.
    """

    path: Path
    content: bytes
    origin: str


def cache_dir():
    """Return the user cache folder that downloads are saved in.

    Returns
    -------
    Path
        ``pooch.os_cache("influence-kit")``. The folder may not exist yet.
    """
    return Path(pooch.os_cache("influence-kit"))


def check_choice(name, value, allowed, description):
    """Return `value` when it is one of `allowed`, else raise ValueError.

    Parameters
    ----------
    name : str
        Argument name used in the message, for example ``"split"``.
    value : object
        The value passed by the caller.
    allowed : tuple of str
        The valid values.
    description : str
        What the value selects, for example ``"MNIST split"``.

    Returns
    -------
    str
        `value`, unchanged.
    """
    if not isinstance(value, str) or value not in allowed:
        choices = ", ".join(repr(choice) for choice in allowed)
        raise ValueError(
            f"{name}={value!r} is not a valid {description}. Use one of {choices}."
        )
    return value


def verify_content(raw, data_file, source):
    """Check file bytes against the published checksums of `data_file`.

    Parameters
    ----------
    raw : bytes
        The bytes of the file as stored, still compressed for a gzip file.
    data_file : DataFile
        The file's description and checksums.
    source : str
        Path or URL of the bytes, used in the error message.

    Returns
    -------
    bytes
        The verified content, decompressed when ``data_file.gzip`` is True.

    Raises
    ------
    DatasetChecksumError
        If the content does not match, or if a gzip file cannot be
        decompressed.
    """
    first_algorithm = "md5" if data_file.md5 is not None else "sha256"
    first_digest = data_file.md5 if data_file.md5 is not None else data_file.sha256
    content = raw
    if data_file.gzip:
        try:
            content = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise DatasetChecksumError(
                f"Data file {data_file.name!r} at {source} is not a valid gzip file "
                f"({error}), so its content cannot match the expected "
                f"{first_algorithm} {first_digest}. The file is damaged: delete it "
                "so that a good copy can be found elsewhere or downloaded again.",
                source=source,
                algorithm=first_algorithm,
                expected=first_digest,
                actual=None,
            ) from error

    for algorithm, expected in (("md5", data_file.md5), ("sha256", data_file.sha256)):
        if expected is None:
            continue
        actual = hashlib.new(algorithm, content, usedforsecurity=False).hexdigest()
        if actual != expected:
            content_kind = "decompressed content" if data_file.gzip else "content"
            raise DatasetChecksumError(
                f"Checksum mismatch for data file {data_file.name!r} at {source}: "
                f"expected {algorithm} {expected} of the {content_kind}, got {actual}. "
                "The file is damaged or is a different version: delete it so that "
                "a good copy can be found elsewhere or downloaded again.",
                source=source,
                algorithm=algorithm,
                expected=expected,
                actual=actual,
            )
    return content


def fetch(data_file, base_urls, data_home=None, download=True):
    """Find, verify and if needed download one data file.

    The places searched and their order are described in the module
    docstring.

    Parameters
    ----------
    data_file : DataFile
        The file to fetch.
    base_urls : sequence of str
        Mirror base URLs, tried in order. The file's URL is the base URL
        followed by ``data_file.remote_path``.
    data_home : str or os.PathLike or None, default=None
        A data folder searched before all others.
    download : bool, default=True
        Whether to download the file when no local copy exists.

    Returns
    -------
    FetchedFile
        The verified file.

    Raises
    ------
    DatasetChecksumError
        If a local copy fails its checksum.
    DatasetNotFoundError
        If no local copy exists and `download` is False.
    DatasetDownloadError
        If no local copy exists and every mirror failed.
    """
    places = _search_places(data_home)
    if not isinstance(download, bool):
        raise TypeError(
            f"download must be True or False, got {download!r} of type "
            f"{type(download).__name__}."
        )

    for label, folder, _ in places:
        if folder is None:
            continue
        path = folder / data_file.name
        if path.is_file():
            content = verify_content(path.read_bytes(), data_file, str(path))
            logger.debug("Using %s found via the %s: %s", data_file.name, label, path)
            return FetchedFile(path=path, content=content, origin=label)

    if not download:
        first_url = _mirror_urls(data_file, base_urls)[:1]
        source = f" from {first_url[0]}" if first_url else ""
        raise DatasetNotFoundError(
            f"Data file {data_file.name!r} was not found and download=False. "
            f"Looked in:\n{_describe_places(data_file, places)}\n"
            f"To fix this, set the environment variable {ENV_VAR} (or pass "
            f"data_home) to a folder that contains {data_file.name}, or pass "
            f"download=True to download it{source}."
        )
    return _download(data_file, base_urls, places)


def _search_places(data_home):
    """List (label, folder or None, reason when None) for steps 1 to 3."""
    if data_home is not None and not isinstance(data_home, (str, os.PathLike)):
        raise TypeError(
            "data_home must be a folder path (str or os.PathLike) or None, got "
            f"{data_home!r} of type {type(data_home).__name__}."
        )
    env_value = os.environ.get(ENV_VAR, "")
    return [
        (
            "data_home argument",
            None if data_home is None else Path(data_home).expanduser(),
            "not given",
        ),
        (ENV_VAR, Path(env_value).expanduser() if env_value else None, "not set"),
        ("user cache", cache_dir(), ""),
    ]


def _describe_places(data_file, places):
    """Write one line per searched place, for error messages."""
    lines = []
    for label, folder, reason in places:
        if folder is None:
            lines.append(f"  - {label}: {reason}")
        elif not folder.is_dir():
            lines.append(f"  - {label}: {folder} (folder does not exist)")
        else:
            lines.append(f"  - {label}: {folder / data_file.name} (missing)")
    return "\n".join(lines)


def _mirror_urls(data_file, base_urls):
    """Join each base URL with the file's remote path."""
    if isinstance(base_urls, str) or not isinstance(base_urls, Sequence):
        raise TypeError(
            "mirror base URLs must be a list of strings, got "
            f"{base_urls!r}. Wrap a single URL in a list."
        )
    return [url.rstrip("/") + "/" + data_file.remote_path for url in base_urls]


def _download(data_file, base_urls, places):
    """Download `data_file` into the user cache from the first working mirror."""
    urls = _mirror_urls(data_file, base_urls)
    target = cache_dir() / data_file.name
    failures = []
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        failures.append(
            f"  - failed to create the cache folder {target.parent}: {error}"
        )
        urls = []
    if not base_urls:
        failures.append("  - no download mirror is configured")

    downloader = pooch.HTTPDownloader(progressbar=False, timeout=DOWNLOAD_TIMEOUT)
    for url in urls:
        logger.info("Downloading %s from %s", data_file.name, url)
        try:
            content = _download_from(downloader, url, data_file, target)
        # requests' exceptions derive from OSError, so this also covers
        # refused connections, timeouts and HTTP error statuses.
        except (OSError, DatasetChecksumError) as error:
            logger.warning(
                "Download of %s from %s failed: %s", data_file.name, url, error
            )
            failures.append(f"  - {url}: {type(error).__name__}: {error}")
            continue
        return FetchedFile(path=target, content=content, origin=f"download from {url}")

    raise DatasetDownloadError(
        f"Data file {data_file.name!r} was not found locally and could not be "
        f"downloaded. Looked in:\n{_describe_places(data_file, places)}\n"
        "Download attempts:\n" + "\n".join(failures) + "\n"
        "To fix this, check the network connection and try again, or copy the "
        f"file into a folder as {data_file.name} and set the environment "
        f"variable {ENV_VAR} (or pass data_home) to that folder."
    )


def _download_from(downloader, url, data_file, target):
    """Download `url` to a temporary file, verify it, then rename it to `target`."""
    handle, temporary_name = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".part"
    )
    os.close(handle)
    temporary = Path(temporary_name)
    try:
        downloader(url, str(temporary), None)
        content = verify_content(temporary.read_bytes(), data_file, url)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return content

"""On-disk cache of finished retrainings, so an interrupted run resumes.

Layout: ``<cache_dir>/<fingerprint>/<entry>.npz``, where the fingerprint is
a SHA-256 digest of everything a retraining depends on (configuration,
the model's ``repr``, theta0, buffers, training and test data) and the entry name contains the group
digest and the seed. Each entry is written to a temporary file in the same
folder and moved into place with :func:`os.replace`, so a reader sees either
a whole entry or none, even after a crash mid-write.
"""

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


def fingerprint(config, arrays):
    """Return a hex SHA-256 digest of a JSON-able config and a list of arrays.

    Each array contributes its dtype, shape and bytes, so equal values with a
    different dtype give a different digest.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def group_digest(indices):
    """Return a 16-hex-digit digest of a group's sorted row indices."""
    indices = np.ascontiguousarray(np.asarray(indices, dtype=np.int64))
    return hashlib.sha256(indices.tobytes()).hexdigest()[:16]


class RetrainCache:
    """Finished retrainings of one configuration, one ``.npz`` file each.

    Parameters
    ----------
    directory : str or os.PathLike
        Parent folder; the cache lives in ``directory / key[:24]``.
    key : str
        A :func:`fingerprint`.
    description : dict, optional
        Written once as ``key.json`` so a person can tell caches apart.
    """

    def __init__(self, directory, key, description=None):
        self.path = Path(directory) / key[:24]
        self.path.mkdir(parents=True, exist_ok=True)
        if description is not None and not (self.path / "key.json").exists():
            text = json.dumps(description, sort_keys=True, indent=1, default=str)
            _write_atomic(
                self.path / "key.json", lambda file: file.write(text.encode())
            )

    def entry_path(self, name):
        """Return the file of entry ``name``."""
        return self.path / f"{name}.npz"

    def get(self, name):
        """Return the arrays of entry ``name`` as a dict, or None when absent.

        An unreadable entry is logged, deleted and reported as absent, so it
        is computed again.
        """
        path = self.entry_path(name)
        if not path.exists():
            return None
        try:
            with np.load(path) as stored:
                return {key: stored[key] for key in stored.files}
        except (OSError, ValueError, zipfile.BadZipFile) as error:
            logger.warning(
                "cache entry %s is unreadable (%s); recomputing", path, error
            )
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return None

    def put(self, name, arrays):
        """Write entry ``name`` atomically from a dict of arrays."""
        _write_atomic(self.entry_path(name), lambda file: np.savez(file, **arrays))

    def names(self):
        """Return the names of the finished entries, sorted list of str."""
        return sorted(path.stem for path in self.path.glob("*.npz"))


def _write_atomic(path, write):
    """Call ``write(file)`` on a temporary file, then move it to ``path``.

    On any error, including KeyboardInterrupt, the temporary file is removed
    and ``path`` is left as it was.
    """
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise

"""Input checks shared by the public functions.

Every check runs before any work starts, raises ``ValueError`` or
``TypeError`` with a message that names the argument, the bad value and the
fix, and never modifies its input.
"""

import numbers

import numpy as np


def as_float_matrix(values, name, *, n_columns=None):
    """Return ``values`` as a finite float64 array of shape (n_rows, n_columns).

    Integer, boolean and float32 input is upcast to float64. A copy is made
    only when the dtype or memory layout changes.
    """
    array = np.asarray(values)
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.number) or array.dtype == bool
    ):
        raise TypeError(
            f"{name} must be numeric, got an array of dtype {array.dtype}; "
            "convert it to numbers first"
        )
    if np.iscomplexobj(array):
        raise TypeError(f"{name} must be real, got complex dtype {array.dtype}")
    if array.ndim == 1 and n_columns is not None:
        raise ValueError(
            f"{name} must be 2-D of shape (n_rows, {n_columns}), got shape "
            f"{array.shape}; use {name}.reshape(1, -1) for a single row"
        )
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {array.shape}")
    if n_columns is not None and array.shape[1] != n_columns:
        raise ValueError(
            f"{name} has {array.shape[1]} columns but the model was fitted on "
            f"{n_columns} features; shapes are {name} {array.shape} and "
            f"training X (n_samples, {n_columns})"
        )
    array = np.ascontiguousarray(array, dtype=np.float64)
    check_finite(array, name)
    return array


def check_finite(array, name):
    """Raise ``ValueError`` naming the first row and column that is NaN or inf."""
    finite = np.isfinite(array)
    if finite.all():
        return
    bad = np.argwhere(~finite)[0]
    position = ", ".join(str(int(i)) for i in bad)
    kind = "a NaN" if np.isnan(array[tuple(bad)]) else "an infinite"
    where = f"row {bad[0]}, column {bad[1]}" if array.ndim == 2 else f"[{position}]"
    raise ValueError(
        f"{name} contains {kind} value at {where} ({int((~finite).sum())} "
        "non-finite entries in all); remove or impute these entries"
    )


def as_float_vector(values, name, *, length=None):
    """Return ``values`` as a finite float64 vector, checking its length."""
    array = np.asarray(values)
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.number) or array.dtype == bool
    ):
        raise TypeError(f"{name} must be numeric, got dtype {array.dtype}")
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if length is not None and array.shape[0] != length:
        raise ValueError(
            f"{name} has shape {array.shape} but X has {length} rows; "
            f"pass one entry per row of X, shape ({length},)"
        )
    array = np.asarray(array, dtype=np.float64)
    check_finite(array, name)
    return array


def check_sample_weight(sample_weight, n_samples):
    """Return float64 sample weights, all ones when ``sample_weight`` is None."""
    if sample_weight is None:
        return np.ones(n_samples)
    weights = as_float_vector(sample_weight, "sample_weight", length=n_samples)
    if (weights < 0).any():
        row = int(np.flatnonzero(weights < 0)[0])
        raise ValueError(
            f"sample_weight must be non-negative, got {float(weights[row])} at row "
            f"{row}; use 0 to drop a point"
        )
    return weights


def check_integer(value, name, *, minimum=None):
    """Return ``value`` as an int, rejecting bools, floats and strings."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"{name} must be an integer, got {value!r} of type {type(value).__name__}"
        )
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def check_positive_float(value, name, *, allow_zero=False):
    """Return ``value`` as a float, checking that it is finite and positive."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    low_ok = value >= 0 if allow_zero else value > 0
    if not np.isfinite(value) or not low_ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value!r}")
    return value


def as_group_indices(group, n_samples, name="group"):
    """Return a group as a sorted int64 array of distinct row indices.

    ``group`` is a sequence of non-negative integer row indices or a boolean
    mask of length ``n_samples``. Negative indices are rejected rather than
    wrapped, so -1 never silently means the last point.
    """
    array = np.asarray(group)
    if array.dtype == bool:
        if array.ndim != 1 or array.shape[0] != n_samples:
            raise ValueError(
                f"{name} is a boolean mask of shape {array.shape}, but the "
                f"training set has {n_samples} points; pass a mask of shape "
                f"({n_samples},) or a list of row indices"
            )
        indices = np.flatnonzero(array)
    else:
        if array.ndim != 1:
            raise ValueError(
                f"{name} must be a 1-D list of row indices or a boolean mask, "
                f"got shape {array.shape}"
            )
        if array.size and not np.issubdtype(array.dtype, np.integer):
            raise TypeError(
                f"{name} must contain integer row indices, got dtype "
                f"{array.dtype} (first value {array.ravel()[0]!r}); convert "
                "with np.asarray(indices, dtype=int) if the values are whole"
            )
        indices = array.astype(np.int64)
    if indices.size == 0:
        raise ValueError(
            f"{name} is empty; a group must contain at least one training point"
        )
    negative = indices[indices < 0]
    if negative.size:
        raise ValueError(
            f"{name} contains the negative index {int(negative[0])}; indices "
            f"must be in [0, {n_samples - 1}] and negative indices are not "
            "wrapped around"
        )
    too_large = indices[indices >= n_samples]
    if too_large.size:
        raise ValueError(
            f"{name} contains the index {int(too_large[0])}, out of range for "
            f"a training set of {n_samples} points; indices must be in "
            f"[0, {n_samples - 1}]"
        )
    unique, counts = np.unique(indices, return_counts=True)
    if (counts > 1).any():
        repeated = unique[counts > 1]
        raise ValueError(
            f"{name} contains the index {int(repeated[0])} more than once "
            f"({repeated.size} repeated indices in all); each point can be "
            "removed only once, so pass distinct indices"
        )
    return unique

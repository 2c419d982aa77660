"""Collections of training-point groups.

A :class:`GroupSet` is an ordered list of groups, each a set of distinct row
indices into the training set, with an id and a type (for example
``"class"`` or ``"kmeans-8"``) that end up as columns of the results table.
"""

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ._validation import as_group_indices


@dataclass(frozen=True)
class GroupSet:
    """Validated groups of training points.

    Attributes
    ----------
    indices : tuple of ndarray
        Sorted, distinct int64 row indices of each group.
    ids : tuple of str
        One id per group, unique.
    types : tuple of str
        One type label per group.
    n_samples : int
        Number of points in the training set the indices refer to.
    """

    indices: tuple
    ids: tuple
    types: tuple
    n_samples: int

    @classmethod
    def from_groups(cls, groups, n_samples, *, ids=None, types="custom"):
        """Validate groups and build a :class:`GroupSet`.

        Parameters
        ----------
        groups : sequence of array-like, mapping of id to array-like, or GroupSet
            Each group is a list of distinct non-negative row indices or a
            boolean mask of length ``n_samples``. A mapping supplies the ids.
        n_samples : int
            Size of the training set.
        ids : sequence of str, optional
            Group ids; defaults to the mapping keys or ``"0"``, ``"1"``, ...
        types : str or sequence of str, default="custom"
            One type for all groups, or one per group.
        """
        if isinstance(groups, GroupSet):
            if groups.n_samples != n_samples:
                raise ValueError(
                    f"groups were built for {groups.n_samples} training points "
                    f"but the training set has {n_samples}; rebuild the groups"
                )
            return groups
        if isinstance(groups, dict):
            if ids is not None:
                raise ValueError("pass ids either as mapping keys or as ids=, not both")
            ids = [str(key) for key in groups]
            groups = list(groups.values())
        elif groups is None or isinstance(groups, (set, frozenset, str)):
            raise TypeError(
                f"groups must be a list of groups, got {type(groups).__name__}; "
                "pass for example [[0, 1], [5, 7, 9]]"
            )
        elif isinstance(groups, np.ndarray) and groups.ndim == 1:
            raise TypeError(
                "groups must be a sequence of groups; for a single group pass [indices]"
            )
        groups = list(groups)
        if groups and isinstance(groups[0], (int, np.integer)):
            raise TypeError(
                f"groups must be a list of groups, but groups[0] is the integer "
                f"{groups[0]!r}; for a single group pass a list containing one "
                "list of row indices, such as [[6, 7]]"
            )
        for position, group in enumerate(groups):
            unordered = isinstance(group, (set, frozenset, dict))
            if group is None or unordered or hasattr(group, "__next__"):
                raise TypeError(
                    f"groups[{position}] is a {type(group).__name__}; pass a list "
                    "or array of row indices, or a boolean mask"
                )
        if not groups:
            raise ValueError("groups is empty; pass at least one group")
        indices = tuple(
            as_group_indices(group, n_samples, name=f"groups[{position}]")
            for position, group in enumerate(groups)
        )
        if ids is None:
            ids = [str(position) for position in range(len(indices))]
        ids = tuple(str(group_id) for group_id in ids)
        if len(ids) != len(indices):
            raise ValueError(f"got {len(ids)} ids for {len(indices)} groups")
        if len(set(ids)) != len(ids):
            seen = set()
            repeated = next(i for i in ids if i in seen or seen.add(i))
            raise ValueError(f"group ids must be unique, {repeated!r} is repeated")
        if isinstance(types, str):
            types = (types,) * len(indices)
        types = tuple(str(group_type) for group_type in types)
        if len(types) != len(indices):
            raise ValueError(f"got {len(types)} types for {len(indices)} groups")
        return cls(indices, ids, types, int(n_samples))

    def __len__(self):
        return len(self.indices)

    @property
    def sizes(self):
        """Number of points in each group, ndarray of shape (n_groups,)."""
        return np.array([group.size for group in self.indices], dtype=np.int64)

    def membership(self, dtype=np.float64):
        """Return the sparse 0/1 matrix of shape (n_groups, n_samples)."""
        rows = np.repeat(np.arange(len(self)), self.sizes)
        columns = np.concatenate(self.indices)
        values = np.ones(columns.size, dtype=dtype)
        return sp.csr_matrix(
            (values, (rows, columns)), shape=(len(self), self.n_samples)
        )

    def subset(self, positions):
        """Return the groups at ``positions`` as a new :class:`GroupSet`."""
        positions = list(positions)
        return GroupSet(
            tuple(self.indices[p] for p in positions),
            tuple(self.ids[p] for p in positions),
            tuple(self.types[p] for p in positions),
            self.n_samples,
        )

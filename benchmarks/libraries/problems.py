"""The two benchmark problems, their groups and test points, saved as bundles.

=============  ===================================================  ========
problem        training data                                        classes
=============  ===================================================  ========
multinomial    10 % of the MNIST training split (6,000, stratified)  10
binary         every 3 and 8 of the MNIST training split (11,982)    2
=============  ===================================================  ========

Both use L2 logistic regression with ``l2_strength = 1`` on pixels scaled
to [0, 1], an unpenalised intercept, 6 test points (the first test-split
images of the problem's classes) and the standard study set of 1,000
groups from :func:`influence_kit.group_generators.standard_groups` (sizes
0.25 % to 25 % of the training set, eight kinds). A bundle is an ``.npz``
file with the data, the kit's certified fit and the groups, so every
library runs on exactly the same numbers.
"""

import numpy as np

from influence_kit import GroupInfluence, LogisticRegression
from influence_kit.datasets import load_mnist, mnist_subset
from influence_kit.group_generators import standard_groups

PROBLEMS = ("multinomial", "binary")
L2_STRENGTH = 1.0
N_TEST_POINTS = 6
N_GROUPS = 1000
BINARY_CLASSES = (3, 8)


def _flatten(images):
    return images.reshape(images.shape[0], -1).astype(np.float64) / 255.0


def load_problem(name):
    """Return ``X, y, X_test, y_test`` of a benchmark problem."""
    test_images, test_labels = load_mnist("test")
    if name == "multinomial":
        subset = mnist_subset(fraction=0.1, seed=0)
        X, y = subset.X, subset.y
        test_rows = np.arange(N_TEST_POINTS)
    elif name == "binary":
        images, labels = load_mnist("train")
        keep = np.isin(labels, BINARY_CLASSES)
        X, y = _flatten(images[keep]), labels[keep]
        test_rows = np.flatnonzero(np.isin(test_labels, BINARY_CLASSES))
        test_rows = test_rows[:N_TEST_POINTS]
    else:
        raise ValueError(f"problem must be one of {PROBLEMS}, got {name!r}")
    return X, y, _flatten(test_images[test_rows]), test_labels[test_rows]


def build_bundle(name, path, n_groups=N_GROUPS, seed=0):
    """Fit the kit, build the groups and save everything to ``path`` (.npz)."""
    X, y, X_test, y_test = load_problem(name)
    engine = GroupInfluence(LogisticRegression(l2_strength=L2_STRENGTH), X, y)
    groups = standard_groups(engine, X_test, y_test, n_groups=n_groups, seed=seed)
    data = engine.data
    np.savez(
        path,
        X=X,
        y=y,
        targets=data.targets,
        X_test=X_test,
        y_test=y_test,
        test_targets=data.encode(y_test, name="y_test"),
        params=engine.params,
        n_outputs=data.n_outputs,
        l2_strength=L2_STRENGTH,
        group_indices=np.concatenate(groups.indices),
        group_offsets=np.cumsum([0, *groups.sizes]),
        group_ids=np.array(groups.ids),
        group_types=np.array(groups.types),
    )


def load_bundle(path):
    """Return the bundle as a dict of arrays, with ``groups`` a list of index arrays."""
    with np.load(path) as stored:
        bundle = {key: stored[key] for key in stored.files}
    offsets = bundle["group_offsets"]
    bundle["groups"] = [
        bundle["group_indices"][offsets[i] : offsets[i + 1]]
        for i in range(offsets.size - 1)
    ]
    return bundle


def membership_matrix(bundle):
    """Return the dense 0/1 matrix of shape (n_groups, n_samples)."""
    matrix = np.zeros((len(bundle["groups"]), bundle["X"].shape[0]))
    for row, indices in enumerate(bundle["groups"]):
        matrix[row, indices] = 1.0
    return matrix

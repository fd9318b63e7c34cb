"""Built-in datasets from scikit-learn, the `mnist1d` generator, and synthetic point/blob generators.

None of these touches the network: scikit-learn's sets ship with the package and every other set
is generated from its seed.
"""

from __future__ import annotations

import random
import threading

import numpy as np

from kdviz.data.dataset import Dataset, DatasetError, register_dataset
from kdviz.data.options import check_float, check_int, check_seed
from kdviz.data.splits import ArraySplit, build_dataset

_GLOBAL_RNG_LOCK = threading.Lock()  # mnist1d seeds the global RNGs; serialise and restore them


@register_dataset(
    "digits", "image", "scikit-learn's 8×8 handwritten digits (1,797 grey images, 10 classes)", {"seed": 0}
)
def load_digits(seed: int = 0) -> Dataset:
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    x = bunch.images.reshape(-1, 1, 8, 8).astype(np.float32)
    names = [str(name) for name in bunch.target_names]
    return build_dataset("digits", "image", names, ArraySplit(x, bunch.target), seed=check_seed(seed))


@register_dataset(
    "mnist1d",
    "signal",
    "MNIST-1D: 10 classes of procedurally generated 1-D signals of length 40 (the mnist1d package's generator)",
    {"n_samples": 5000, "seed": 0},
)
def load_mnist1d(n_samples: int = 5000, seed: int = 0) -> Dataset:
    """Generate MNIST-1D locally; `n_samples` // 10 signals per digit (5,000 takes about a second)."""
    n_samples = check_int("n_samples", n_samples, 30, 200_000)
    seed = check_seed(seed)
    from mnist1d.data import get_dataset_args, make_dataset  # imported lazily: it pulls in scipy and matplotlib

    args = get_dataset_args()
    args.num_samples = n_samples
    args.seed = seed
    with _GLOBAL_RNG_LOCK:
        numpy_state, python_state = np.random.get_state(), random.getstate()
        try:
            generated = make_dataset(args)  # generates only; `get_dataset` would try to download
        finally:
            np.random.set_state(numpy_state)
            random.setstate(python_state)
    x = np.concatenate([generated["x"], generated["x_test"]])[:, None, :].astype(np.float32)
    y = np.concatenate([generated["y"], generated["y_test"]]).astype(np.int64)
    return build_dataset("mnist1d", "signal", [str(d) for d in range(10)], ArraySplit(x, y), seed=seed)


@register_dataset("moons", "points", "two interleaving half-moons in 2-D", {"n_samples": 1000, "noise": 0.2, "seed": 0})
def load_moons(n_samples: int = 1000, noise: float = 0.2, seed: int = 0) -> Dataset:
    from sklearn.datasets import make_moons

    n_samples = check_int("n_samples", n_samples, 6, 1_000_000)
    seed = check_seed(seed)
    x, y = make_moons(n_samples=n_samples, noise=check_float("noise", noise, 0.0, 10.0), random_state=seed)
    return build_dataset("moons", "points", ["upper moon", "lower moon"], ArraySplit(x, y), seed=seed)


@register_dataset(
    "circles",
    "points",
    "a small circle inside a large one in 2-D",
    {"n_samples": 1000, "noise": 0.1, "factor": 0.5, "seed": 0},
)
def load_circles(n_samples: int = 1000, noise: float = 0.1, factor: float = 0.5, seed: int = 0) -> Dataset:
    from sklearn.datasets import make_circles

    n_samples = check_int("n_samples", n_samples, 6, 1_000_000)
    seed = check_seed(seed)
    # factor must stay strictly inside (0, 1): scikit-learn rejects 1 and 0 makes the inner circle a point
    factor = check_float("factor", factor, 0.01, 0.99)
    x, y = make_circles(
        n_samples=n_samples, noise=check_float("noise", noise, 0.0, 10.0), factor=factor, random_state=seed
    )
    return build_dataset("circles", "points", ["outer", "inner"], ArraySplit(x, y), seed=seed)


def gaussian_mixture(n_classes: int, separation: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Means (K×2), covariances (K×2×2) and priors (K,) of the `gaussians` classes.

    Means sit on a circle of radius `separation`; even classes are isotropic, odd classes elongated
    and tilted; priors decrease with the class index so the posterior is not just the likelihood.
    """
    angles = 2 * np.pi * np.arange(n_classes) / n_classes
    means = separation * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    covariances = np.empty((n_classes, 2, 2))
    for k, angle in enumerate(angles):
        if k % 2 == 0:
            covariances[k] = np.eye(2) * 0.8**2
        else:
            tilt = angle + np.pi / 4
            rotation = np.array([[np.cos(tilt), -np.sin(tilt)], [np.sin(tilt), np.cos(tilt)]])
            covariances[k] = rotation @ np.diag([1.2**2, 0.45**2]) @ rotation.T
    weights = 1.0 / (1.0 + 0.5 * np.arange(n_classes))
    return means, covariances, weights / weights.sum()


def gaussian_posterior(
    points: np.ndarray, means: np.ndarray, covariances: np.ndarray, priors: np.ndarray
) -> np.ndarray:
    """Exact class posterior p(k | x) (N×K) by Bayes' rule for a Gaussian mixture."""
    diffs = points[:, None, :] - means[None]  # N×K×D
    precisions = np.linalg.inv(covariances)
    mahalanobis = np.einsum("nki,kij,nkj->nk", diffs, precisions, diffs)
    _, log_dets = np.linalg.slogdet(covariances)
    # the shared (2π)^(-D/2) factor cancels in the normalisation
    log_joint = np.log(priors)[None] - 0.5 * (mahalanobis + log_dets[None])
    log_joint -= log_joint.max(axis=1, keepdims=True)
    joint = np.exp(log_joint)
    return joint / joint.sum(axis=1, keepdims=True)


@register_dataset(
    "gaussians",
    "points",
    "overlapping 2-D Gaussian classes with a known true posterior (Bayes' rule)",
    {"n_samples": 1500, "n_classes": 3, "separation": 1.5, "seed": 0},
)
def load_gaussians(n_samples: int = 1500, n_classes: int = 3, separation: float = 1.5, seed: int = 0) -> Dataset:
    """Sample the mixture of `gaussian_mixture`; `true_posterior_*` holds p(class | x) for every point."""
    n_classes = check_int("n_classes", n_classes, 2, 20)
    n_samples = check_int("n_samples", n_samples, 10 * n_classes, 1_000_000)
    separation = check_float("separation", separation, 0.0, 100.0)
    seed = check_seed(seed)
    means, covariances, priors = gaussian_mixture(n_classes, separation)
    rng = np.random.default_rng((seed, 0x6A55))
    labels = rng.choice(n_classes, size=n_samples, p=priors)
    # x = mean + L z with L the Cholesky factor of the covariance
    factors = np.linalg.cholesky(covariances)
    points = means[labels] + np.einsum("nij,nj->ni", factors[labels], rng.standard_normal((n_samples, 2)))
    # the posterior is computed in the original coordinates; normalising x afterwards does not change it
    posterior = gaussian_posterior(points, means, covariances, priors)
    names = [f"class {k}" for k in range(n_classes)]
    data = ArraySplit(points, labels, true_posterior=posterior)
    return build_dataset("gaussians", "points", names, data, seed=seed)


@register_dataset(
    "wine", "tabular", "scikit-learn's wine recognition set (178 samples, 13 features, 3 classes)", {"seed": 0}
)
def load_wine(seed: int = 0) -> Dataset:
    from sklearn.datasets import load_wine as sklearn_wine

    bunch = sklearn_wine()
    names = [str(name) for name in bunch.target_names]
    return build_dataset("wine", "tabular", names, ArraySplit(bunch.data, bunch.target), seed=check_seed(seed))


@register_dataset(
    "breast_cancer",
    "tabular",
    "scikit-learn's breast cancer Wisconsin set (569 samples, 30 features, 2 classes)",
    {"seed": 0},
)
def load_breast_cancer(seed: int = 0) -> Dataset:
    from sklearn.datasets import load_breast_cancer as sklearn_breast_cancer

    bunch = sklearn_breast_cancer()
    names = [str(name) for name in bunch.target_names]
    data = ArraySplit(bunch.data, bunch.target)
    return build_dataset("breast_cancer", "tabular", names, data, seed=check_seed(seed))


@register_dataset(
    "many_classes",
    "tabular",
    "Gaussian blobs with many classes (1,000 by default) in 32 dimensions, for large-scale KD",
    {"n_classes": 1000, "n_per_class": 10, "n_features": 32, "cluster_std": 1.0, "seed": 0},
)
def load_many_classes(
    n_classes: int = 1000, n_per_class: int = 10, n_features: int = 32, cluster_std: float = 1.0, seed: int = 0
) -> Dataset:
    """Class centres ~ N(0, I) and samples ~ N(centre, cluster_std² I); classes "c0", "c1", ..."""
    n_classes = check_int("n_classes", n_classes, 2, 100_000)
    n_per_class = check_int("n_per_class", n_per_class, 3, 100_000)
    n_features = check_int("n_features", n_features, 1, 4096)
    cluster_std = check_float("cluster_std", cluster_std, 0.0, 100.0)
    seed = check_seed(seed)
    if n_classes * n_per_class * n_features > 200_000_000:
        raise DatasetError(
            f"many_classes with {n_classes} classes × {n_per_class} samples × {n_features} features is too large "
            "(limit 200,000,000 values)"
        )
    rng = np.random.default_rng((seed, 0xB10B))
    centres = rng.standard_normal((n_classes, n_features))
    labels = np.repeat(np.arange(n_classes), n_per_class)
    points = centres[labels] + cluster_std * rng.standard_normal((len(labels), n_features))
    names = [f"c{k}" for k in range(n_classes)]
    return build_dataset("many_classes", "tabular", names, ArraySplit(points, labels), seed=seed)

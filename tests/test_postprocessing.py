"""DelDirection and Del-zscore against a direct numpy computation."""
import numpy as np
import torch

from defemb.surgery.postprocessing import del_direction, del_zscore


def anisotropic(rows=500, dim=200, seed=0) -> np.ndarray:
    """A large common mean and a dominant direction: uncentred PCA would pick the mean."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(rows, dim)) + rng.normal(size=dim) * 3 + np.outer(rng.normal(size=rows), rng.normal(size=dim))


def numpy_all_but_the_top(E: np.ndarray, D: int) -> np.ndarray:
    X = E - E.mean(0)
    _, _, vt = np.linalg.svd(X, full_matrices=False)  # principal directions of the *centred* matrix
    U = vt[:D].T
    return X - X @ U @ U.T


def test_deldirection_matches_numpy_svd_of_centred_matrix():
    E = anisotropic()
    expected = numpy_all_but_the_top(E, 2)  # D = 200 / 100
    given = torch.tensor(E).float()
    got = del_direction(given).numpy()
    assert torch.equal(given, torch.tensor(E).float())  # the input (surgery's memory-mapped E) is not written
    np.testing.assert_allclose(got, expected, atol=2e-4)
    # the authors' variant (directions of the uncentred matrix) differs: the test can tell them apart
    _, _, vt = np.linalg.svd(E, full_matrices=False)
    X = E - E.mean(0)
    uncentred = X - X @ vt[:2].T @ vt[:2]
    assert np.abs(got - uncentred).max() > 1e-2
    np.testing.assert_allclose(del_direction(torch.tensor(E).float(), 5).numpy(), numpy_all_but_the_top(E, 5), atol=2e-4)
    # D = max(1, d // 100): d = 64 -> 1 direction
    small = anisotropic(300, 64, 1)
    np.testing.assert_allclose(del_direction(small).numpy(), numpy_all_but_the_top(small, 1), atol=2e-4)


def test_del_zscore_zero_mean_unit_std_per_dimension():
    E = anisotropic(seed=3)
    Z = del_zscore(torch.tensor(E).float()).numpy()
    np.testing.assert_allclose(Z.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(Z.std(0, ddof=1), 1, atol=1e-4)
    X = numpy_all_but_the_top(E, 2)
    np.testing.assert_allclose(Z, (X - X.mean(0)) / X.std(0, ddof=1), atol=1e-3)

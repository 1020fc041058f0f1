"""DelDirection (Eq. 3 and the centred variant) and Del-zscore against direct numpy computations."""
import numpy as np
import torch

from fairseq_defemb.surgery.postprocessing import del_direction, del_direction_centred, del_zscore, num_directions_for


def anisotropic(rows=500, dim=200, seed=0) -> np.ndarray:
    """A large common mean and a dominant direction: uncentred PCA would pick the mean."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(rows, dim)) + rng.normal(size=dim) * 3 + np.outer(rng.normal(size=rows), rng.normal(size=dim))


def top_directions(E: np.ndarray, D: int) -> np.ndarray:
    _, _, vt = np.linalg.svd(E - E.mean(0), full_matrices=False)  # principal directions of the *centred* matrix
    return vt[:D].T


def numpy_eq3(E: np.ndarray, D: int) -> np.ndarray:
    U = top_directions(E, D)
    return (E - E.mean(0)) - E @ U @ U.T  # the uncentred e projected, as printed


def numpy_centred(E: np.ndarray, D: int) -> np.ndarray:
    X, U = E - E.mean(0), top_directions(E, D)
    return X - X @ U @ U.T


def test_deldirection_is_eq3_and_the_centred_variant_differs():
    E = anisotropic()
    given = torch.tensor(E).float()
    got = del_direction(given).numpy()
    assert torch.equal(given, torch.tensor(E).float())  # the input (surgery's memory-mapped E) is not written
    np.testing.assert_allclose(got, numpy_eq3(E, 2), atol=2e-4)  # D = 200 / 100
    centred = del_direction_centred(given).numpy()
    np.testing.assert_allclose(centred, numpy_centred(E, 2), atol=2e-4)
    # the two differ by one constant row, U U^T mu: Eq. 3's rows keep that mean, the centred ones none
    U, mu = top_directions(E, 2), E.mean(0)
    np.testing.assert_allclose(centred - got, np.broadcast_to(U @ U.T @ mu, E.shape), atol=2e-4)
    assert np.abs(U @ U.T @ mu).max() > 1e-1
    np.testing.assert_allclose(centred.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(del_direction(given, 5).numpy(), numpy_eq3(E, 5), atol=2e-4)


def test_number_of_directions_is_d_over_100_and_at_least_one():
    assert [num_directions_for(d) for d in (1024, 768, 384, 199, 64)] == [10, 7, 3, 1, 1]
    small = anisotropic(300, 64, 1)
    np.testing.assert_allclose(del_direction(small).numpy(), numpy_eq3(small, 1), atol=2e-4)


def test_del_zscore_is_eq3_then_zero_mean_unit_std_per_dimension():
    E = anisotropic(seed=3)
    Z = del_zscore(torch.tensor(E).float()).numpy()
    np.testing.assert_allclose(Z.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(Z.std(0, ddof=1), 1, atol=1e-4)
    X = numpy_eq3(E, 2)
    np.testing.assert_allclose(Z, (X - X.mean(0)) / X.std(0, ddof=1), atol=1e-3)

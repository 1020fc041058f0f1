"""Isotropy I(E) of Mu et al. (2018): closed form, naive reference, invariances, groups."""
import numpy as np
import pytest
import torch

from fairseq_defemb.isotropy import isotropy, isotropy_by_group


def naive_isotropy(E: np.ndarray) -> float:
    """Mu et al.'s definition, literally: np.linalg.eig of E^T E, an explicit loop over the
    eigenvectors and their negations (both are eigenvectors; scoring both makes I sign-free)."""
    _, vectors = np.linalg.eig(E.T @ E)
    z = [np.exp(E @ (sign * np.real(vectors[:, i]))).sum() for i in range(E.shape[1]) for sign in (1, -1)]
    return min(z) / max(z)


def test_isotropic_matrix_scores_near_one_in_closed_form():
    # Rows +-s_i e_i: the eigenvectors are the axes and Z(+-e_i) = 2 cosh(s_i) + 2 (d - 1).
    d = 16
    scales = 3.0 + 1e-3 * np.arange(d)  # distinct, so the eigenvectors are unique
    E = np.concatenate([np.diag(scales), -np.diag(scales)])
    z = 2 * np.cosh(scales) + 2 * (d - 1)
    assert isotropy(E) == pytest.approx(z.min() / z.max(), rel=1e-6)
    assert isotropy(E) > 0.99


def test_rank_collapsed_and_shifted_matrices_score_near_zero():
    rng = np.random.default_rng(0)
    E = rng.normal(size=(2000, 32)) * 0.01 + 5.0 * rng.normal(size=32)  # a narrow cone around a shared mean
    assert isotropy(E) < 1e-3
    assert isotropy(E - E.mean(0)) > 0.5  # centring restores it
    line = np.outer(rng.normal(size=500), rng.normal(size=8)) * 3  # rank 1
    assert isotropy(line) < 1e-3


def test_matches_naive_and_ignores_row_order():
    rng = np.random.default_rng(1)
    E = rng.normal(size=(300, 12)) * 0.3 + 0.2 * rng.normal(size=12)
    assert isotropy(E) == pytest.approx(naive_isotropy(E), rel=1e-6)
    assert isotropy(E[rng.permutation(300)]) == pytest.approx(isotropy(E), rel=1e-9)
    assert isotropy(torch.tensor(E, dtype=torch.float32)) == pytest.approx(isotropy(E), rel=1e-6)


def test_no_clipping_for_large_norms():
    """exp overflows float64 here; log-sum-exp still gives the exact ratio (clipping would give ~1)."""
    E = np.array([[800.0, 0.0], [-800.0, 0.0], [0.0, 810.0], [0.0, -810.0]])
    assert isotropy(E) == pytest.approx(np.exp(800 - 810), rel=1e-6)


@pytest.mark.parametrize("partition", [True, False])
def test_groups_match_separate_computation(partition):
    rng = np.random.default_rng(2)
    E = (rng.normal(size=(100, 8)) + np.linspace(0, 3, 100)[:, None]).astype(np.float32)
    groups = {"frequent": np.arange(0, 30), "medium": np.arange(30, 80), "rare": np.arange(80, 100),
              "all": np.arange(100) if partition else np.arange(5, 100)}
    by_group = isotropy_by_group(E, groups)
    assert set(by_group) == set(groups)
    for name, ids in groups.items():
        assert by_group[name] == pytest.approx(isotropy(E[ids]), rel=1e-6)
    assert len({round(v, 6) for v in by_group.values()}) == 4  # the groups really differ here

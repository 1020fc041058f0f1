"""Isotropy I(E) of Mu et al. (2018): closed form, naive reference, invariances, groups."""
import numpy as np
import pytest
import torch

import defemb.analysis.isotropy as iso
from defemb.analysis.frequency_groups import frequency_groups
from defemb.analysis.isotropy import isotropy, isotropy_by_group


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
    """Row order only changes float32 rounding (the Gram matrix's accumulation, the sums of exp over
    rows): I moves by a few 1e-7 at most, within its agreement with the float64 reference."""
    rng = np.random.default_rng(1)
    E = rng.normal(size=(300, 12)) * 0.3 + 0.2 * rng.normal(size=12)
    assert isotropy(E) == pytest.approx(naive_isotropy(E), rel=1e-6)
    for _ in range(5):
        assert isotropy(E[rng.permutation(300)]) == pytest.approx(isotropy(E), rel=1e-6)
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


def test_gram_matrix_is_the_float64_gram_for_any_block_split(monkeypatch):
    """Only the upper block triangle is multiplied (d = 10: blocks of 3, 3, 3, 1) and mirrored; row
    chunks (GRAM_ROWS) add up in float64."""
    monkeypatch.setattr(iso, "GRAM_ROWS", 7)
    E = torch.tensor(np.random.default_rng(3).normal(size=(50, 10)), dtype=torch.float32)
    expected = E.double().T @ E.double()
    gram = iso.gram_matrix(E)
    assert gram.dtype == torch.float64 and torch.equal(gram, gram.T)
    torch.testing.assert_close(gram, expected, rtol=1e-6, atol=1e-5)


def test_log_partition_over_chunks_matches_one_float64_log_sum_exp(monkeypatch):
    """Chunked max/exp/sum passes combined in float64 give the log-sum-exp over all rows, for both
    signs, whatever the chunk size and row order: float32 rounding only (a chunk of one row is a
    matrix-vector product, rounded differently), no clipping."""
    rng = np.random.default_rng(4)
    E = torch.tensor(rng.normal(size=(103, 6)) * 30 + 2, dtype=torch.float32)  # exp overflows float32
    C = torch.linalg.qr(torch.tensor(rng.normal(size=(6, 6))))[0].float()
    projected = (E @ C).double()
    expected = torch.stack([torch.logsumexp(projected, 0), torch.logsumexp(-projected, 0)])
    for rows in (1, 10, 103, 500):
        monkeypatch.setattr(iso, "PROJECT_ROWS", rows)
        for order in (np.arange(103), rng.permutation(103)):
            torch.testing.assert_close(iso.log_partition_of_directions(E[order], C), expected, rtol=1e-6, atol=1e-6)


def test_rows_of_is_a_view_only_for_consecutive_ids():
    E = torch.arange(40.0).reshape(10, 4)
    run = iso.rows_of(E, np.arange(3, 7))
    assert run.data_ptr() == E[3].data_ptr() and torch.equal(run, E[3:7])
    for ids in (np.array([1, 3, 4]), np.array([4, 3]), np.array([], dtype=np.int64)):
        assert torch.equal(iso.rows_of(E, ids), E[torch.as_tensor(ids, dtype=torch.long)])


def test_updated_grams_match_recomputed_ones():
    """Surgery derives E's Grams from E0's when few rows changed: the same matrices (and isotropy) as
    computing them from E; a group most of whose rows changed is recomputed."""
    rng = np.random.default_rng(5)
    E0 = torch.tensor(rng.normal(size=(200, 16)) + 0.5, dtype=torch.float32)
    groups = frequency_groups(200, 4, 199)
    changed = np.sort(np.concatenate([groups["frequent"][:5], groups["rare"]]))  # few frequent, every rare row
    E = E0.clone()
    E[changed] = torch.tensor(rng.normal(size=(len(changed), 16)) * 2, dtype=torch.float32)
    updated = iso.group_grams(E, groups, (E0, iso.group_grams(E0, groups), changed))
    direct = iso.group_grams(E, groups)
    for name in groups:
        torch.testing.assert_close(updated[name], direct[name], rtol=1e-6, atol=1e-3)
    by_group = iso.isotropy_from_grams(E, groups, updated)
    for name, value in isotropy_by_group(E, groups).items():
        assert by_group[name] == pytest.approx(value, rel=1e-6)
    assert by_group["medium"] == pytest.approx(isotropy_by_group(E0, groups)["medium"], rel=1e-6)  # untouched

"""Geometry preservation: drift per group and the 2D projection basis (Figures 2, 6)."""
import numpy as np
import pytest

from fairseq_defemb.analysis.geometry import drift, plot_projections, projection_basis


def test_drift_on_constructed_matrices():
    before = np.eye(4)
    after = before.copy()
    after[3] = [0, 0, 0, 2]      # same direction, twice the norm
    after[2] = [0, 1, 0, 0]      # rotated onto row 1's direction
    result = drift(before, after, {"rare": np.array([3]), "medium": np.array([2]), "frequent": np.array([0, 1])})
    assert result["rare"] == {"mean_l2": 1.0, "mean_cosine": 1.0}
    assert result["medium"]["mean_l2"] == pytest.approx(np.sqrt(2)) and result["medium"]["mean_cosine"] == pytest.approx(0.0)
    assert result["frequent"] == {"mean_l2": 0.0, "mean_cosine": 1.0}


def test_projection_basis_is_the_top_right_singular_vectors(tmp_path):
    rng = np.random.default_rng(0)
    E = rng.normal(size=(500, 6)) * np.array([5.0, 0.1, 3.0, 0.1, 0.1, 0.1]) + 7.0
    mean, basis = projection_basis(E)
    _, _, vt = np.linalg.svd(E - E.mean(0), full_matrices=False)
    assert np.allclose(mean.numpy(), E.mean(0))
    for i in range(2):
        assert abs(float(basis[:, i].numpy() @ vt[i])) == pytest.approx(1.0, abs=1e-8)
    groups = {"frequent": np.arange(150), "medium": np.arange(150, 400), "rare": np.arange(400, 500)}
    plot_projections({"before": E, "after": E + 1}, groups, tmp_path / "p.png", highlight={"x": 3})
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"

"""Paired bootstrap (Koehn 2004) over pooled seeds."""
import numpy as np
import pytest

from defemb.analysis.significance import accuracy, correctness, paired_bootstrap, pool


def test_strictly_better_system_is_significant():
    rng = np.random.default_rng(0)
    base = rng.normal(size=300)
    better = paired_bootstrap(base, base + 0.5)
    assert better["p_value"] == 0.0 and better["wins"] == 1000 and better["significant_at_0.05"]
    assert better["delta"] == pytest.approx(0.5) and better["ci95"][0] == pytest.approx(0.5)


def test_identical_systems_are_not_significant():
    base = np.random.default_rng(0).normal(size=300)
    same = paired_bootstrap(base, base.copy())
    assert same["p_value"] == 1.0 and not same["significant_at_0.05"]  # never strictly better


def test_noise_only_gives_a_middling_p_and_is_seeded():
    rng = np.random.default_rng(3)
    base = rng.normal(size=400)
    other = base + rng.normal(size=400)
    other = other - (other - base).mean()  # exactly equal means: p should be near 0.5
    result = paired_bootstrap(base, other, resamples=2000)
    assert 0.35 < result["p_value"] < 0.65
    assert paired_bootstrap(base, other, seed=7) == paired_bootstrap(base, other, seed=7)
    assert paired_bootstrap(base, other, seed=7)["p_value"] != paired_bootstrap(base, other, seed=8)["p_value"]


def test_small_real_improvement_on_accuracy_pooled_over_seeds():
    labels = [i % 3 for i in range(200)]
    seeds_base = [[l if i % 4 else (l + 1) % 3 for i, l in enumerate(labels)] for _ in range(3)]  # 75% right
    seeds_sys = [[l if i % 10 else (l + 1) % 3 for i, l in enumerate(labels)] for _ in range(3)]  # 90% right
    base = pool([correctness(p, labels) for p in seeds_base])
    system = pool([correctness(p, labels) for p in seeds_sys])
    assert base.size == 600 and accuracy(seeds_base[0], labels) == pytest.approx(0.75)
    result = paired_bootstrap(base, system)
    assert result["delta"] == pytest.approx(0.15) and result["p_value"] < 0.01


def test_bad_inputs():
    with pytest.raises(ValueError):
        paired_bootstrap([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        correctness([1], [1, 2])

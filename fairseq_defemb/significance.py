"""Paired bootstrap resampling (Koehn 2004) over a pooled test set.

As in the paper (Section 6.1): the per-example scores of all seeds are pooled into one
test pool, resampled with replacement 1,000 times, and the p-value is the share of
resamples in which the system does not beat the baseline.
"""
import numpy as np


def paired_bootstrap(baseline: np.ndarray, system: np.ndarray, resamples: int = 1000, seed: int = 12345) -> dict:
    """``baseline`` and ``system``: per-example scores aligned on the same (seed, example) pool."""
    a, b = np.asarray(baseline, dtype=float).ravel(), np.asarray(system, dtype=float).ravel()
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"paired bootstrap needs two equal, non-empty score lists (got {a.size} and {b.size})")
    rng = np.random.default_rng(seed)
    index = rng.integers(0, a.size, size=(resamples, a.size))
    delta = b[index].mean(axis=1) - a[index].mean(axis=1)
    return {
        "baseline_mean": float(a.mean()), "system_mean": float(b.mean()), "delta": float(b.mean() - a.mean()),
        "p_value": float((delta <= 0).mean()), "wins": int((delta > 0).sum()), "resamples": resamples,
        "ci95": [float(np.percentile(delta, 2.5)), float(np.percentile(delta, 97.5))],
    }


def accuracy(predictions: list, labels: list) -> float:
    if len(predictions) != len(labels) or not labels:
        raise ValueError("accuracy needs equal, non-empty prediction and label lists")
    return float(np.mean([p == g for p, g in zip(predictions, labels)]))

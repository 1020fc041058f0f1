"""Paired bootstrap resampling (Koehn 2004) over a pooled test set.

As in the paper (Section 6.1): the per-example scores of all seeds are pooled into one
test pool (seed k of the baseline paired with seed k of the system, example by example),
resampled with replacement 1,000 times (seeded: the same call gives the same p), and the
p-value is the share of resamples in which the system does not beat the baseline
(``delta <= 0``; identical systems give p = 1, "not significant").

Scores per example: GLUE-style accuracy uses 0/1 correctness (``correctness``); ROUGE uses the
per-summary ROUGE-1.5.5 F1 that sacrerouge's wrapper reads off the script's ``-d`` output
(``rouge.rouge_155``; rouge-score's per-example F1 is the fallback where it cannot run), and the
mean of a resample as its score. With ``-a`` ROUGE-1.5.5's corpus score is itself the mean of the
per-summary F, so this is the statistic the corpus figure reports, without 1,000 Perl runs.
"""
import numpy as np


def paired_bootstrap(baseline: np.ndarray, system: np.ndarray, resamples: int = 1000, seed: int = 12345) -> dict:
    """``baseline`` and ``system``: per-example scores aligned on the same (seed, example) pool."""
    a, b = np.asarray(baseline, dtype=float).ravel(), np.asarray(system, dtype=float).ravel()
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"paired bootstrap needs two equal, non-empty score lists (got {a.size} and {b.size})")
    rng = np.random.default_rng(seed)
    diff = b - a  # mean(b[idx]) - mean(a[idx]) == mean((b - a)[idx]) for paired resampling
    chunk = max(1, 2_000_000 // a.size)  # bounded memory for pools of 10^4-10^5 examples
    delta = np.concatenate([diff[rng.integers(0, a.size, size=(min(chunk, resamples - i), a.size))].mean(axis=1)
                            for i in range(0, resamples, chunk)])
    return {
        "baseline_mean": float(a.mean()), "system_mean": float(b.mean()), "delta": float(b.mean() - a.mean()),
        "p_value": float((delta <= 0).mean()), "wins": int((delta > 0).sum()), "resamples": resamples,
        "ci95": [float(np.percentile(delta, 2.5)), float(np.percentile(delta, 97.5))],
        "significant_at_0.05": bool((delta <= 0).mean() < 0.05), "seed": seed, "pool_size": int(a.size),
    }


def pool(per_seed_scores: list) -> np.ndarray:
    """Concatenate per-seed score lists into one pool (seed order must match between systems)."""
    return np.concatenate([np.asarray(s, dtype=float).ravel() for s in per_seed_scores])


def correctness(predictions: list, labels: list) -> np.ndarray:
    """0/1 per example: the per-example score of accuracy (GLUE classification tasks)."""
    if len(predictions) != len(labels) or not labels:
        raise ValueError(f"correctness needs equal, non-empty prediction and label lists ({len(predictions)} vs {len(labels)})")
    return np.asarray([p == g for p, g in zip(predictions, labels)], dtype=float)


def accuracy(predictions: list, labels: list) -> float:
    return float(correctness(predictions, labels).mean())

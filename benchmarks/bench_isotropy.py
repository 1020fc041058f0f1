"""Isotropy with frequency groups on a BART-large-shaped matrix vs the naive implementation.

    python benchmarks/bench_isotropy.py [--rows 50265 --dim 1024] [--repeats 3] [--quick]

Fast: ``fairseq_defemb.analysis.isotropy.isotropy_by_group`` (float64 Gram matrices, ``numpy.linalg.eig``
on one thread, each row projected once on its group's eigenvectors and those of "all" side by side,
a chunked exp/sum log-sum-exp; both the paper's figure and the sign-invariant one). Naive: the
authors' script literally, per group: ``np.linalg.eig`` of X^T X (float64, one thread, as the fast
path, so both see the same signs), then an explicit Python loop over the eigenvectors, each with the
sign eig returns, computing sum(exp(X c)). The loop over all d directions of all four groups would
take minutes, so it is timed on ``--sample-directions`` directions per group and scaled to d (the
Gram and eig are timed in full). Both run in this process on the same random float32 matrix; the
fast one ``--repeats`` times (median). Agreement of the paper's figure is checked in full on a
smaller matrix (``--check-rows`` x 256). Prints one JSON object (last line).
"""
import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fairseq_defemb.analysis.frequency_groups import frequency_groups  # noqa: E402
from fairseq_defemb.analysis.isotropy import CONVENTIONS, eig_vectors, group_grams, isotropy_by_group  # noqa: E402


def naive_group(E: np.ndarray, sample: int | None = None) -> tuple[float | None, float, float]:
    """(the paper's I, or None if sampled; Gram + eig seconds; loop seconds scaled to all d directions)."""
    X = E.astype(np.float64)
    t0 = time.perf_counter()
    with threadpool_limits(limits=1, user_api="blas"):
        _, vectors = np.linalg.eig(X.T @ X)
    vectors = np.real(vectors)
    t1 = time.perf_counter()
    directions = list(range(X.shape[1]))
    chosen = directions if sample is None else directions[:: max(1, len(directions) // sample)][:sample]
    z = [np.exp(X @ vectors[:, i]).sum() for i in chosen]
    t2 = time.perf_counter()
    loop = (t2 - t1) * len(directions) / len(chosen)
    return (min(z) / max(z) if sample is None else None), t1 - t0, loop


def necessary_work(E: np.ndarray, groups: dict, repeats: int) -> dict:
    """Seconds of what any exact implementation must do, at this CPU's rates, best of ``repeats``:
    the float64 Gram matrices (the chunk products of the groups and of "all", one OpenBLAS thread
    each, side by side), one ``numpy.linalg.eig`` per group on one thread, side by side, and the
    projection of every row on 2 x d directions (its group's and those of "all") as one float32
    matrix product. What ``isotropy_by_group`` spends above their sum is its own overhead."""
    X = torch.from_numpy(E)
    directions = torch.randn(E.shape[1], 2 * E.shape[1])
    grams = group_grams(X, groups)

    def best(fn) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    parts = {"gram": best(lambda: group_grams(X, groups)),
             "eig_float64": best(lambda: eig_vectors(*grams.values())),
             "projections": best(lambda: torch.mm(X, directions))}
    return {**{k: round(v, 3) for k, v in parts.items()}, "sum": round(sum(parts.values()), 3)}


def eig_threads(gram: np.ndarray) -> dict:
    """``numpy.linalg.eig`` of one Gram on one OpenBLAS thread and on two: seconds of each, and how many
    eigenvectors the second returns otherwise (another sign, or another vector in a near-degenerate
    pair). The paper's figure scores each eigenvector with the sign eig returns, so it can move with them
    (by up to 0.016 per group on all-MiniLM-L6-v2 under equally valid Gram roundings:
    isotropy_sign_spread.py)."""
    vectors, seconds = {}, {}
    for threads in (1, 2):
        with threadpool_limits(limits=threads, user_api="blas"):
            start = time.perf_counter()
            vectors[threads] = np.real(np.linalg.eig(gram)[1])
            seconds[threads] = time.perf_counter() - start
    differ = ~np.isclose(vectors[1], vectors[2], rtol=0, atol=1e-6).all(axis=0)
    flipped = np.isclose(vectors[1], -vectors[2], rtol=0, atol=1e-6).all(axis=0)
    return {"one_thread_seconds": round(seconds[1], 3), "two_threads_seconds": round(seconds[2], 3),
            "dim": gram.shape[0], "eigenvectors_differing": int(differ.sum()), "of_which_sign_flipped": int(flipped.sum())}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=50265)
    p.add_argument("--dim", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sample-directions", type=int, default=48, help="naive loop: directions timed per group")
    p.add_argument("--check-rows", type=int, default=4000)
    p.add_argument("--quick", action="store_true", help="10,000 rows, 1 repeat, no scaling runs")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.quick:
        args.rows, args.repeats = 10000, 1
    rng = np.random.default_rng(args.seed)
    # Anisotropic like a real embedding matrix: a shared mean direction and decaying spectrum.
    scale = (1.0 / np.sqrt(1 + np.arange(args.dim))).astype(np.float32)
    E = (rng.standard_normal((args.rows, args.dim), dtype=np.float32) * scale * 0.5 + 0.05).astype(np.float32)
    groups = frequency_groups(args.rows, 4, args.rows - 1)
    threads = torch.get_num_threads()
    load_before = os.getloadavg()[0]

    fast_times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        fast = isotropy_by_group(E, groups)
        fast_times.append(time.perf_counter() - t)
    fast_seconds = statistics.median(fast_times)

    floor = necessary_work(E, groups, args.repeats)

    eig_seconds = loop_seconds = 0.0
    for name, ids in groups.items():
        _, eig_s, loop_s = naive_group(E[ids], args.sample_directions)
        eig_seconds += eig_s
        loop_seconds += loop_s
    naive_seconds = eig_seconds + loop_seconds

    # Exact agreement on a smaller matrix, both in full.
    C = (rng.standard_normal((args.check_rows, 256), dtype=np.float32) * scale[:256] * 0.5 + 0.05).astype(np.float32)
    cg = frequency_groups(args.check_rows, 4, args.check_rows - 1)
    fast_small = isotropy_by_group(C, cg)
    naive_small = {g: naive_group(C[ids])[0] for g, ids in cg.items()}
    rel = max(abs(fast_small["paper"][g] - naive_small[g]) / naive_small[g] for g in cg)

    result = {
        "stage": "isotropy", "rows": args.rows, "dim": args.dim, "dtype": "float32", "torch_threads": threads,
        "fast_seconds": round(fast_seconds, 3), "fast_runs": [round(t, 3) for t in fast_times],
        "naive_seconds_extrapolated": round(naive_seconds, 2), "naive_eig_seconds": round(eig_seconds, 2),
        "naive_loop_seconds_extrapolated": round(loop_seconds, 2),
        "naive_loop_directions_timed_per_group": args.sample_directions,
        "speedup_vs_naive": round(naive_seconds / fast_seconds, 1),
        "isotropy": {c: {g: float(f"{v:.6g}") for g, v in fast[c].items()} for c in CONVENTIONS},
        "isotropy_conventions": fast["conventions"],
        "check": {"shape": [args.check_rows, 256], "max_rel_diff_fast_vs_naive": float(f"{rel:.3g}")},
        "load_average_1min": {"start": load_before, "end": os.getloadavg()[0]},
        "necessary_work_seconds": floor,
        "eig_threads_all_group": eig_threads(group_grams(torch.from_numpy(E), {"all": groups["all"]})["all"]),
    }
    if not args.quick:
        scaling = {}
        for rows in (10000, 25000):
            sub = E[:rows]
            g = frequency_groups(rows, 4, rows - 1)
            t = time.perf_counter()
            isotropy_by_group(sub, g)
            scaling[rows] = round(time.perf_counter() - t, 3)
        scaling[args.rows] = round(fast_seconds, 3)
        result["scaling"] = scaling
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Isotropy I(E) of Mu et al. (2018), as the DefinitionEMB authors computed it, and sign-invariant.

    I(E) = min_c Z(c) / max_c Z(c),  Z(c) = sum_w exp(c^T e_w),  c over the eigenvectors of E^T E

Two figures come out of one pass, always side by side:

* ``paper`` (the default): what the authors' ``examples/bart/analyze_isotropy.py`` does per
  group: ``numpy.linalg.eig(E.T @ E)`` and one direction per eigenvector, with the sign eig
  returns. The Gram matrix is float64 (float32 rows, products and sums in float64) and eig runs
  on one OpenBLAS thread, so the value is deterministic on a machine: eig's signs are not a
  continuous function of its input (on all-MiniLM-L6-v2 a 1e-13 change of the Gram, e.g. the
  rows summed in another order, flips about half of them, and the thread count changes them
  too), and the paper figure moves with them: on MiniLM by up to 0.016 per group under equally
  valid summation orders (``benchmarks/isotropy_sign_spread.py``). It is the number comparable
  with the paper's Table 23, not a property of E alone.
* ``sign_invariant``: the same eigenvectors, both signs of each scored (if c is an eigenvector,
  so is -c). That makes I a function of E alone, not of the solver's sign choice, whenever the
  eigenvalues are distinct (they are for any real embedding matrix).

log Z(c) comes from a log-sum-exp over rows, and I = exp(min log Z - max log Z): no exponent is
clipped. The authors clipped c^T e at +-50 before exp; that gives exactly this value whenever no
projection leaves [-50, 50], so every report carries ``max_abs_projection`` per group (where it
exceeds 50 the clipped value is biased toward 1: large Z shrink, tiny ones grow; on all-MiniLM-L6-v2
the largest is 0.6). Each figure carries its conventions as a signature string (``signature``).

Cost: the Gram of each group (and of "all", computed from its own rows as the authors' code
does, not summed from the groups) is the sum, in row order, of float64 ``X.T @ X`` (numpy's
dsyrk) over fixed chunks of GRAM_ROWS rows. The chunk products run side by side on one OpenBLAS
thread each (dsyrk's bits do not depend on its thread count), and a chunk two groups share, or
that the surgery report's matrices before and after share, is computed once; summing the groups'
Grams for "all", or updating a Gram by the changed rows, would round otherwise and can flip eig's
signs. eig of each d x d Gram is the dominant fixed cost (about 1 s on one thread at d = 1,024
here, against 0.26 s for a symmetric eigh, which the paper's figure cannot use); it stays on one
thread (on two, about half of its eigenvectors come back with the other sign:
``benchmarks/bench_isotropy.py``), so the groups' eigs run side by side, one per core. Projections
run as float32 matrix multiplies in row chunks and partial log-sum-exps combine in float64; the
log-sum-exp of a chunk runs while its projections are still in cache: one exp pass, its reciprocal
for -c, two sums. For frequency groups that partition "all" (``frequency_groups``) each row is
projected once, on its group's eigenvectors and on those of "all" side by side.
"""
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import torch
from threadpoolctl import threadpool_limits

PAPER = "paper"
SIGN_INVARIANT = "sign_invariant"
CONVENTIONS = (PAPER, SIGN_INVARIANT)
# The authors' exponent clipping; reported against max_abs_projection, never applied.
AUTHORS_CLIP = 50.0
# Rows per float64 Gram product. Fixed, so the Gram's bits (and with them eig's signs) depend on
# E alone, not on the machine's memory; 4,096 rows are 32 MB in float64 at d = 1,024.
GRAM_ROWS = 4096
# Rows projected at a time: their projections on 2 x 1,024 directions (8 MB float32) stay in cache
# for the exp/sum passes; larger chunks spill to memory, smaller ones slow the product down.
PROJECT_ROWS = 1024
# Below this |projection| exp(+-p) is a normal float32 (e^80 < 3.4e38, e^-80 > 1.2e-38): a chunk
# needs no max-shift, and exp(-p) is the reciprocal of exp(p).
UNSHIFTED_LIMIT = 80.0
# Per worker thread: the float64 rows of its Gram product, the projections of its row chunk and their exps.
_thread_buffers = threading.local()


def signature(convention: str, groups_convention: str = "groups:as given") -> str:
    """The conventions behind an isotropy figure, e.g. for the paper's:
    ``I(E)|solver:numpy.linalg.eig(float64 Gram, 1 thread)|dirs:one-per-eigvec(eig sign)|groups:...|lse:no-clip``."""
    dirs = {PAPER: "one-per-eigvec(eig sign)", SIGN_INVARIANT: "both signs per eigvec"}[convention]
    return f"I(E)|solver:numpy.linalg.eig(float64 Gram, 1 thread)|dirs:{dirs}|{groups_convention}|lse:no-clip"


def _as_tensor(E: np.ndarray | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(E).detach().float().cpu()


def rows_of(E: torch.Tensor, ids: np.ndarray | torch.Tensor) -> torch.Tensor:
    """E[ids]; a view, not a copy, when ``ids`` is a run of consecutive ids (a frequency group)."""
    ids = torch.as_tensor(np.asarray(ids), dtype=torch.long)
    if len(ids) and int(ids[-1]) - int(ids[0]) == len(ids) - 1 and bool((ids.diff() == 1).all()):
        return E[int(ids[0]):int(ids[-1]) + 1]
    return E.index_select(0, ids)


@contextmanager
def _workers(tasks: int) -> Iterator[ThreadPoolExecutor]:
    """One worker thread per core (at most ``tasks``), every call in them on one OpenBLAS and one torch
    thread. Independent single-threaded calls keep the cores busy without the barriers of a
    multi-threaded op, which wait for a descheduled thread whenever another process (or surgery's
    writer) holds a core: with one of the two cores taken, the projections of a 50,265 x 1,024 matrix
    took 6.3 s on two torch threads against 2.6 s on one. One OpenBLAS limit for all workers: entering
    and leaving it per call from several threads would race."""
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1, user_api="blas"), \
                ThreadPoolExecutor(max_workers=max(1, min(tasks, os.cpu_count() or 1))) as pool:
            yield pool
    finally:
        torch.set_num_threads(torch_threads)


def _chunk_gram(E: torch.Tensor, ids: np.ndarray, centre: torch.Tensor | None) -> np.ndarray:
    """``X.T @ X`` (numpy's dsyrk: the same bits on one OpenBLAS thread as on several) of E's rows ``ids``
    in float64, minus ``centre`` if given. The float64 rows go to a buffer of the calling thread: a
    fresh 32 MB array per chunk cost ~30 ms of CPU in page faults, the copy into the buffer 3 ms."""
    rows = rows_of(E, ids)
    buffer = getattr(_thread_buffers, "rows", None)
    if buffer is None or buffer.size(0) < rows.size(0) or buffer.size(1) != rows.size(1):
        buffer = _thread_buffers.rows = torch.empty(rows.shape, dtype=torch.float64)
    x = buffer[:rows.size(0)]
    if centre is None:
        x.copy_(rows)
    else:
        torch.sub(rows, centre, out=x)
    x = x.numpy()
    return x.T @ x


def _chunk_key(ids: np.ndarray) -> tuple:
    """What identifies a chunk of rows: (first id, length) for a run of consecutive ids (the first
    chunks of "all" and "frequent" share theirs), else the ids themselves."""
    if int(ids[-1]) - int(ids[0]) == len(ids) - 1 and bool((np.diff(ids) == 1).all()):
        return int(ids[0]), len(ids)
    return (ids.tobytes(),)


def _summed_products(jobs: list[tuple[torch.Tensor, dict[str, np.ndarray]]], centre: torch.Tensor | None = None,
                     same_rows: Callable[[np.ndarray], bool] | None = None) -> list[dict[str, np.ndarray]]:
    """``group_grams`` of each (E, groups) of ``jobs``, one chunk product per distinct chunk: a chunk
    whose rows ``same_rows`` says are equal in every job's E is computed once, from the first."""
    plans, tasks = [], {}
    for index, (E, groups) in enumerate(jobs):
        plan = {}
        for name, ids in groups.items():
            ids = np.asarray(ids)
            plan[name] = []
            for start in range(0, len(ids), GRAM_ROWS):
                part = ids[start:start + GRAM_ROWS]
                owner = 0 if same_rows is not None and same_rows(part) else index
                task = (owner, _chunk_key(part))
                tasks.setdefault(task, (jobs[owner][0], part))
                plan[name].append(task)
        plans.append(plan)
    uses = Counter(task for plan in plans for parts in plan.values() for task in parts)
    results = []
    with _workers(len(tasks)) as pool:
        products = {task: pool.submit(_chunk_gram, E, part, centre) for task, (E, part) in tasks.items()}
        for (E, _), plan in zip(jobs, plans):
            grams = {}
            for name, parts in plan.items():
                gram = np.zeros((E.size(1), E.size(1)))
                for task in parts:  # in row order, as one serial pass over the group would add them
                    gram += products[task].result()
                    uses[task] -= 1
                    if not uses[task]:
                        del products[task]  # its 8 MB are not needed again
                grams[name] = gram
            results.append(grams)
    return results


def group_grams(E: torch.Tensor, groups: dict[str, np.ndarray], centre: torch.Tensor | None = None) -> dict[str, np.ndarray]:
    """Gram matrix (float64) of each group's rows of E (float32), "all" included: each the sum, in row
    order, of ``X.T @ X`` over its own chunks of GRAM_ROWS float64 rows (minus ``centre``, float64, if
    given), never updated or summed from other groups, so a group's Gram (and its eigenvectors' signs)
    are the same bits whichever tool computes them. The chunk products run side by side (``_workers``),
    and a chunk two groups share is computed once."""
    return _summed_products([(E, groups)], centre)[0]


def changed_group_grams(before: torch.Tensor, after: torch.Tensor, changed: np.ndarray, groups: dict[str, np.ndarray],
                        touched: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``group_grams`` of ``before`` for ``groups`` and of ``after`` for ``touched``, where ``after`` is
    ``before`` with rows ``changed`` replaced: a chunk with no changed row has the same product in
    both, computed once. Each Gram is still the sum of its own chunks' products in row order, so the
    bits are those of two separate calls (a rank-k update of the "before" Gram would not be)."""
    mask = np.zeros(before.size(0), dtype=bool)
    mask[np.asarray(changed, dtype=np.int64)] = True
    grams_before, grams_after = _summed_products([(before, groups), (after, touched)],
                                                 same_rows=lambda ids: not mask[ids].any())
    return grams_before, grams_after


def gram_matrix(E: torch.Tensor, centre: torch.Tensor | None = None) -> np.ndarray:
    """E^T E in float64, as ``X.T @ X`` of float64 rows per chunk of GRAM_ROWS (one product, bit for
    bit, for matrices up to that size); with ``centre`` (float64), of the rows minus it."""
    return group_grams(E, {"rows": np.arange(E.size(0))}, centre)["rows"]


def _eig(gram: np.ndarray) -> np.ndarray:
    _, vectors = np.linalg.eig(gram)
    if np.iscomplexobj(vectors):
        vectors = np.real(vectors)
        vectors = vectors / np.linalg.norm(vectors, axis=0)
    return vectors


def eig_vectors(*grams: np.ndarray) -> list[np.ndarray]:
    """Eigenvectors (columns, float64) of each Gram as ``numpy.linalg.eig`` returns them: its order and
    signs, each on one OpenBLAS thread (its output depends on the thread count). The calls run side by
    side on the machine's cores (LAPACK releases the GIL), so pinning costs no wall time when there are
    as many Grams as cores. A complex pair, which eig can return for two nearly equal eigenvalues, keeps
    its real parts, renormalised."""
    with _workers(len(grams)) as pool:
        return list(pool.map(_eig, grams))


def _chunk_log_partition(chunk: torch.Tensor, directions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log sum_w exp(s c^T e_w) over the rows of ``chunk``, float64, shape (2, k); max_w |c^T e_w|, (k,))."""
    k, n = directions.size(1), chunk.size(0)
    if getattr(_thread_buffers, "projected", None) is None or _thread_buffers.projected.numel() < k * n:
        _thread_buffers.projected, _thread_buffers.exps = torch.empty(k * n), torch.empty(k * n)
    # row x direction: MKL rounds a row's projections the same wherever the row sits (not so for the
    # transposed product), which keeps row order out of the result
    p = torch.mm(chunk, directions, out=_thread_buffers.projected[:k * n].view(n, k))
    e = _thread_buffers.exps[:k * n].view(n, k)
    low, high = p.amin(0), p.amax(0)  # two passes: 9x faster than torch.aminmax over dim 0 here
    # float32 sums within a chunk (torch's cascade summation: ~1e-7 relative), float64 across
    if max(-low.min().item(), high.max().item()) <= UNSHIFTED_LIMIT:
        torch.exp(p, out=e)
        plus = e.sum(0).double().log()
        minus = e.reciprocal_().sum(0).double().log()  # exp(-p) = 1 / exp(p)
    else:  # shift each direction by its largest projection (-c: by minus the smallest)
        plus = torch.sub(p, high, out=e).exp_().sum(0).double().log() + high.double()
        minus = torch.sub(low, p, out=e).exp_().sum(0).double().log() - low.double()
    return torch.stack([plus, minus]), torch.maximum(-low, high)


def log_partition_of_directions(rows: torch.Tensor, directions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log sum_w exp(s c^T e_w) over ``rows`` for every column c of ``directions`` and sign s, float64,
    shape (2, k): row 0 for +c, row 1 for -c; max_w |c^T e_w| per direction, shape (k,)). Chunks of
    PROJECT_ROWS rows run side by side (``_workers``), their parts combined in row order."""
    if rows.size(0) == 0:
        raise ValueError("log partition over no rows (an empty group)")
    chunks = torch.split(rows, PROJECT_ROWS)
    with _workers(len(chunks)) as pool:
        parts, tops = zip(*pool.map(_chunk_log_partition, chunks, [directions] * len(chunks)))
    largest = torch.zeros(directions.size(1))
    for top in tops:
        largest = torch.maximum(largest, top)
    return torch.logsumexp(torch.stack(parts), 0), largest


def _ratio(log_z: torch.Tensor) -> float:
    return float(torch.exp(log_z.min() - log_z.max()))


def _figures(log_z: torch.Tensor) -> dict[str, float]:
    """Both conventions from the (2, d) log partitions of one eigenbasis: +c only, and both signs."""
    return {PAPER: _ratio(log_z[0]), SIGN_INVARIANT: _ratio(log_z)}


def isotropy(E: np.ndarray | torch.Tensor, convention: str = PAPER) -> float:
    """I(E) in [0, 1] under ``convention`` (``paper`` or ``sign_invariant``); 1 for an isotropic matrix."""
    if convention not in CONVENTIONS:
        raise ValueError(f"isotropy convention {convention!r}: pass one of {', '.join(CONVENTIONS)}")
    E = _as_tensor(E)
    log_z, _ = log_partition_of_directions(E, torch.from_numpy(eig_vectors(gram_matrix(E))[0]).float())
    return _figures(log_z)[convention]


def _partitioned(groups: dict[str, np.ndarray]) -> bool:
    """Whether the groups other than "all" partition "all" (then each row is projected once)."""
    if "all" not in groups:
        return False
    parts = [np.asarray(ids) for name, ids in groups.items() if name != "all"]
    joined, whole = (np.concatenate(parts) if parts else np.zeros(0, np.int64)), np.asarray(groups["all"])
    return len(joined) == len(whole) and np.array_equal(np.sort(joined), np.sort(whole))


def isotropy_from_grams(E: torch.Tensor, groups: dict[str, np.ndarray], grams: dict[str, np.ndarray],
                        groups_convention: str = "groups:as given") -> dict:
    """Both figures for each group's rows of E (float32), given each group's Gram (``group_grams``);
    the report ``isotropy_by_group`` describes."""
    directions = dict(zip(groups, (torch.from_numpy(v).float() for v in eig_vectors(*(grams[name] for name in groups)))))
    fused = _partitioned(groups)
    log_z, largest = {}, {}
    for name in groups:
        if name == "all" and fused:
            continue
        rows = rows_of(E, groups[name])
        if name != "all" and fused:  # this group's rows, on its own eigenvectors and on those of "all"
            d = directions[name].size(1)
            both, top = log_partition_of_directions(rows, torch.cat([directions[name], directions["all"]], 1))
            log_z[name], largest[name] = both[:, :d], float(top[:d].max())
            log_z["all"] = torch.logaddexp(log_z["all"], both[:, d:]) if "all" in log_z else both[:, d:]
            largest["all"] = max(largest.get("all", 0.0), float(top[d:].max()))
        else:
            log_z[name], top = log_partition_of_directions(rows, directions[name])
            largest[name] = float(top.max())
    figures = {name: _figures(log_z[name]) for name in groups}
    return {
        **{convention: {name: figures[name][convention] for name in groups} for convention in CONVENTIONS},
        "max_abs_projection": {name: largest[name] for name in groups},
        "conventions": {convention: signature(convention, groups_convention) for convention in CONVENTIONS},
        "clipping": f"the authors clipped c^T e at +-{AUTHORS_CLIP:g} before exp; their value equals this one for "
                    f"every group whose max_abs_projection is <= {AUTHORS_CLIP:g}",
    }


def isotropy_by_group(E: np.ndarray | torch.Tensor, groups: dict[str, np.ndarray],
                      groups_convention: str = "groups:as given") -> dict:
    """I of each group's own rows (the paper's Table 23: frequent / medium / rare / all), as a report:
    ``paper`` and ``sign_invariant`` ({group: I} each), ``max_abs_projection`` per group, and the
    ``conventions`` (a signature string per figure, ``groups_convention`` describing the groups)."""
    E = _as_tensor(E)
    return isotropy_from_grams(E, groups, group_grams(E, groups), groups_convention)

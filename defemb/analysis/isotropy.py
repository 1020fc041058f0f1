"""Isotropy I(E) of Mu et al. (2018), computed stably.

    I(E) = min_c Z(c) / max_c Z(c),  Z(c) = sum_w exp(c^T e_w),  c over the eigenvectors of E^T E

The eigenvectors come from a symmetric eigendecomposition (float64) of the d x d Gram
matrix. An eigenvector's sign is arbitrary (if c is one, so is -c), so both signs are
scored: that makes I(E) a function of E alone, not of the solver's sign convention
(for a centred E the two agree closely anyway). Then log Z(c) from a log-sum-exp over rows, and
I = exp(min log Z - max log Z): no exponent is clipped (the authors' code clipped, which biases
I toward 1 for large norms).

Cost: the N x d x d products (Gram, projections) run as float32 matrix multiplies in row chunks;
Gram chunks accumulate and partial log-sum-exps combine in float64. The log-sum-exp of a chunk runs
while its projections are still in cache: one exp pass, its reciprocal for -c, two sums
(``torch.logsumexp`` over rows is a strided reduction with full-size temporaries, costing about half
of the product it follows). For frequency groups that partition "all" (``frequency_groups``), the Gram
of "all" is the sum of theirs and each row is projected once, on its group's eigenvectors and on
those of "all" side by side. On 2 cores at BART-large's shape that is ~0.46 s of Gram products, 4 x
0.17 s of float64 eigh and ~1.26 s of projections (``make bench``, benchmarks/README.md).
"""
import numpy as np
import torch

GRAM_ROWS = 16384  # rows per float32 Gram product; the partial Grams add up in float64
# The Gram is symmetric: only the upper block triangle of 4 x 4 column blocks is multiplied, 5/8 of
# the full product's work (finer blocks make the products too narrow to gain more).
GRAM_BLOCKS = 4
# Rows projected at a time: their projections on 2 x 1,024 directions (8 MB float32) stay in cache
# for the exp/sum passes; larger chunks spill to memory, smaller ones slow the product down.
PROJECT_ROWS = 1024
# Below this |projection| exp(+-p) is a normal float32 (e^80 < 3.4e38, e^-80 > 1.2e-38): a chunk
# needs no max-shift, and exp(-p) is the reciprocal of exp(p).
UNSHIFTED_LIMIT = 80.0


def _as_tensor(E: np.ndarray | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(E).detach().float().cpu()


def rows_of(E: torch.Tensor, ids: np.ndarray | torch.Tensor) -> torch.Tensor:
    """E[ids]; a view, not a copy, when ``ids`` is a run of consecutive ids (a frequency group)."""
    ids = torch.as_tensor(np.asarray(ids), dtype=torch.long)
    if len(ids) and int(ids[-1]) - int(ids[0]) == len(ids) - 1 and bool((ids.diff() == 1).all()):
        return E[int(ids[0]):int(ids[-1]) + 1]
    return E.index_select(0, ids)


def gram_matrix(E: torch.Tensor) -> torch.Tensor:
    """E^T E in float64 (symmetric): the upper block triangle multiplied, then mirrored."""
    d = E.size(1)
    step = -(-d // GRAM_BLOCKS)
    gram = torch.zeros(d, d, dtype=torch.float64)
    for chunk in torch.split(E, GRAM_ROWS):
        for start in range(0, d, step):
            gram[start:start + step, start:] += chunk[:, start:start + step].T @ chunk[:, start:]
    for start in range(0, d, step):
        gram[start + step:, start:start + step] = gram[start:start + step, start + step:].T
    return gram


def eigenvectors(gram: torch.Tensor) -> torch.Tensor:
    """Eigenvectors (columns, float32) of a Gram matrix, from a float64 symmetric eigendecomposition."""
    return torch.linalg.eigh(gram.double())[1].float()


def log_partition_of_directions(rows: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """log sum_w exp(s c^T e_w) over ``rows`` for every column c of ``directions`` and sign s:
    float64, shape (2, k), row 0 for +c and row 1 for -c."""
    if rows.size(0) == 0:
        raise ValueError("log partition over no rows (an empty group)")
    k, n = directions.size(1), min(PROJECT_ROWS, rows.size(0))
    projected, exps = torch.empty(k * n), torch.empty(k * n)
    parts = []
    for chunk in torch.split(rows, PROJECT_ROWS):
        # row x direction: MKL rounds a row's projections the same wherever the row sits (not so
        # for the transposed product), which keeps row order out of the result
        p = torch.mm(chunk, directions, out=projected[:k * len(chunk)].view(len(chunk), k))
        e = exps[:k * len(chunk)].view(len(chunk), k)
        low, high = torch.aminmax(p)
        # float32 sums within a chunk (torch's cascade summation: ~1e-7 relative), float64 across
        if max(-low.item(), high.item()) <= UNSHIFTED_LIMIT:
            torch.exp(p, out=e)
            plus = e.sum(0).double().log()
            minus = e.reciprocal_().sum(0).double().log()  # exp(-p) = 1 / exp(p)
        else:  # shift each direction by its largest projection (-c: by minus the smallest)
            high, low = p.amax(0), p.amin(0)
            plus = torch.sub(p, high, out=e).exp_().sum(0).double().log() + high.double()
            minus = torch.sub(low, p, out=e).exp_().sum(0).double().log() - low.double()
        parts.append(torch.stack([plus, minus]))
    return torch.logsumexp(torch.stack(parts), 0)


def log_partition(E: np.ndarray | torch.Tensor, gram: torch.Tensor | None = None) -> torch.Tensor:
    """log Z(c) for every eigenvector c of E^T E, both signs (float64, length 2d: +c, then -c)."""
    E = _as_tensor(E)
    return log_partition_of_directions(E, eigenvectors(gram_matrix(E) if gram is None else gram)).flatten()


def _from_log_partition(log_z: torch.Tensor) -> float:
    return float(torch.exp(log_z.min() - log_z.max()))


def isotropy(E: np.ndarray | torch.Tensor) -> float:
    """I(E) in [0, 1]; 1 for a perfectly isotropic matrix."""
    return _from_log_partition(log_partition(E))


def _partitioned(groups: dict[str, np.ndarray]) -> bool:
    """Whether the groups other than "all" partition "all" (then its Gram is their sum)."""
    if "all" not in groups:
        return False
    parts = [np.asarray(ids) for name, ids in groups.items() if name != "all"]
    joined, whole = (np.concatenate(parts) if parts else np.zeros(0, np.int64)), np.asarray(groups["all"])
    return len(joined) == len(whole) and np.array_equal(np.sort(joined), np.sort(whole))


def group_grams(E: torch.Tensor, groups: dict[str, np.ndarray],
                update: tuple[torch.Tensor, dict[str, torch.Tensor], np.ndarray] | None = None) -> dict[str, torch.Tensor]:
    """Gram matrix (float64) of each group's rows of E (float32); that of "all" is the others' sum
    when they partition it.

    ``update = (E0, grams0, changed)``: E differs from E0 only in the rows ``changed`` and ``grams0``
    holds E0's Gram of each group. A group fewer than half of whose rows changed then gets its old Gram
    minus the old rows' plus the new rows' (two small products) instead of a product over all its rows.
    """
    def gram(name: str) -> torch.Tensor:
        ids = np.asarray(groups[name])
        if update is not None:
            E0, grams0, changed = update
            moved = ids[np.isin(ids, changed)]
            if 2 * len(moved) < len(ids):
                return grams0[name] - gram_matrix(rows_of(E0, moved)) + gram_matrix(rows_of(E, moved))
        return gram_matrix(rows_of(E, ids))

    grams = {name: gram(name) for name in groups if name != "all"}
    if "all" in groups:
        grams["all"] = sum(grams.values()) if _partitioned(groups) else gram("all")
    return grams


def isotropy_from_grams(E: torch.Tensor, groups: dict[str, np.ndarray], grams: dict[str, torch.Tensor]) -> dict[str, float]:
    """I of each group's rows of E (float32), given each group's Gram matrix (``group_grams``)."""
    directions = {name: eigenvectors(gram) for name, gram in grams.items()}
    fused = _partitioned(groups)
    log_z = {}
    for name in groups:
        if name == "all" and fused:
            continue
        rows = rows_of(E, groups[name])
        if name != "all" and fused:  # this group's rows, on its own eigenvectors and on those of "all"
            d = directions[name].size(1)
            both = log_partition_of_directions(rows, torch.cat([directions[name], directions["all"]], 1))
            log_z[name] = both[:, :d]
            log_z["all"] = torch.logaddexp(log_z["all"], both[:, d:]) if "all" in log_z else both[:, d:]
        else:
            log_z[name] = log_partition_of_directions(rows, directions[name])
    return {name: _from_log_partition(log_z[name]) for name in groups}


def isotropy_by_group(E: np.ndarray | torch.Tensor, groups: dict[str, np.ndarray]) -> dict[str, float]:
    """I of each group's own rows (the paper's Table 23: frequent / medium / rare / all)."""
    E = _as_tensor(E)
    return isotropy_from_grams(E, groups, group_grams(E, groups))

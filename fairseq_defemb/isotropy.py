"""Isotropy I(E) of Mu et al. (2018), computed stably.

    I(E) = min_c Z(c) / max_c Z(c),  Z(c) = sum_w exp(c^T e_w),  c over the eigenvectors of E^T E

The eigenvectors come from a symmetric eigendecomposition (float64) of the d x d Gram
matrix. An eigenvector's sign is arbitrary (if c is one, so is -c), so both signs are
scored: that makes I(E) a function of E alone, not of the solver's sign convention
(for a centred E the two agree closely anyway). Then log Z(c) from a log-sum-exp over rows, and I = exp(min log Z - max log Z): no
exponent is clipped (the authors' code clipped, which biases I toward 1 for large norms).
The two N x d x d products run as float32 matrix multiplies in row chunks (the fast
path on CPU and GPU); Gram chunks accumulate and partial log-sum-exps combine in float64.
"""
import numpy as np
import torch

CHUNK_ROWS = 8192


def _as_tensor(E: np.ndarray | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(E).detach().float().cpu()


def gram_matrix(E: torch.Tensor) -> torch.Tensor:
    gram = torch.zeros(E.size(1), E.size(1), dtype=torch.float64)
    for chunk in torch.split(E, CHUNK_ROWS):
        gram += (chunk.T @ chunk).double()
    return gram


def log_partition(E: np.ndarray | torch.Tensor, gram: torch.Tensor | None = None) -> torch.Tensor:
    """log Z(c) for every eigenvector c of E^T E, both signs (float64, length 2d)."""
    E = _as_tensor(E)
    _, directions = torch.linalg.eigh(gram_matrix(E) if gram is None else gram)
    directions = directions.float()
    partial = []
    for chunk in torch.split(E, CHUNK_ROWS):
        projected = chunk @ directions  # -c needs no second product: it is -projected
        partial.append(torch.cat([torch.logsumexp(projected, dim=0), torch.logsumexp(-projected, dim=0)]).double())
    return torch.logsumexp(torch.stack(partial), dim=0)


def _from_log_partition(log_z: torch.Tensor) -> float:
    return float(torch.exp(log_z.min() - log_z.max()))


def isotropy(E: np.ndarray | torch.Tensor) -> float:
    """I(E) in [0, 1]; 1 for a perfectly isotropic matrix."""
    return _from_log_partition(log_partition(E))


def isotropy_by_group(E: np.ndarray | torch.Tensor, groups: dict[str, np.ndarray]) -> dict[str, float]:
    """I of each group's own rows (the paper's Table 23: frequent / medium / rare / all).

    When the other groups partition "all", its Gram matrix is their sum: one pass fewer.
    """
    E = _as_tensor(E)
    rows = {name: E[torch.as_tensor(np.asarray(ids), dtype=torch.long)] for name, ids in groups.items() if name != "all"}
    grams = {name: gram_matrix(X) for name, X in rows.items()}
    result = {name: _from_log_partition(log_partition(X, grams[name])) for name, X in rows.items()}
    if "all" in groups:
        everything = np.asarray(groups["all"])
        parts = np.concatenate([np.asarray(ids) for name, ids in groups.items() if name != "all"] or [np.zeros(0, int)])
        partitioned = len(parts) == len(everything) and np.array_equal(np.sort(parts), np.sort(everything))
        gram = sum(grams.values()) if partitioned else None
        result["all"] = _from_log_partition(log_partition(E[torch.as_tensor(everything, dtype=torch.long)], gram))
    return result

"""The paper's post-processing baselines, applied to the whole embedding matrix.

DelDirection is the paper's Eq. 3 as printed (and Mu et al.'s Algorithm 1, All-but-the-Top):

    e_bar = (e - mu) - sum_{i=1..D} (u_i^T e) u_i,   u_1..u_D = PCA(E - 1 mu^T)

the mean removed, then the projections of the *uncentred* e on the top D principal directions
of the centred matrix subtracted. That differs from projecting the centred vector by one constant
row, sum_i (u_i^T mu) u_i, so the result keeps a mean of -(U U^T mu) (the rows are not centred
and isotropy measured on them is lower: about 0.94 rather than 0.99 on all-MiniLM-L6-v2, issue 13).
``del_direction_centred`` is the variant that projects the centred vector (e - mu) instead: rows
centred, the D directions removed exactly. Del-zscore (Sajjad et al. 2022) is Eq. 3, then a z-score
per dimension with the sample std (ddof 1; the paper does not say which, the two differ by a
factor sqrt(|V| / (|V| - 1))).

D = max(1, floor(d / 100)): the paper's D = h_e / 100 (BART-large, d = 1,024: 10; RoBERTa-base,
768: 7; all-MiniLM-L6-v2, 384: 3), and one direction for d < 200, where d / 100 rounds down to
1 (or to 0 for d < 100, which would remove no direction at all).

All act on the whole matrix E as Eq. 3 does (mu and the PCA over all |V| rows):
``defemb-surgery --method deldirection|deldirection-centred|del-zscore`` passes every row,
specials, ``<mask>`` and ``madeupword`` fillers included, and rewrites every row.
"""
import numpy as np
import torch

from defemb.analysis.isotropy import gram_matrix


def num_directions_for(dim: int) -> int:
    """The paper's D = h_e / 100, at least one direction."""
    return max(1, dim // 100)


def principal_directions(X: torch.Tensor, count: int) -> torch.Tensor:
    """Top ``count`` principal directions (d x count) of an already centred float32 matrix: a float64
    eigendecomposition of X^T X, accumulated in float64."""
    _, vectors = torch.linalg.eigh(torch.from_numpy(gram_matrix(X)))  # ascending eigenvalues
    return vectors[:, -count:].flip(-1).to(X.dtype)


def _centred_and_directions(E: np.ndarray | torch.Tensor, num_directions: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    E = torch.as_tensor(E).float()
    mean = E.mean(0, keepdim=True)
    X = E - mean
    return X, mean, principal_directions(X, num_directions or num_directions_for(E.size(1)))


def del_direction(E: np.ndarray | torch.Tensor, num_directions: int | None = None) -> torch.Tensor:
    """Eq. 3: (e - mu) - sum_i (u_i^T e) u_i for every row e (a new matrix; E is not written)."""
    X, mean, U = _centred_and_directions(E, num_directions)
    # E U = X U + mu U: the uncentred projections without a second full-size matrix
    return X.addmm_(torch.addmm(mean @ U, X, U), U.T, alpha=-1)


def del_direction_centred(E: np.ndarray | torch.Tensor, num_directions: int | None = None) -> torch.Tensor:
    """The centred variant: (e - mu) - sum_i (u_i^T (e - mu)) u_i."""
    X, _, U = _centred_and_directions(E, num_directions)
    return X.addmm_(X @ U, U.T, alpha=-1)


def del_zscore(E: np.ndarray | torch.Tensor, num_directions: int | None = None) -> torch.Tensor:
    """Eq. 3, then (x - mean) / std per dimension (sample std)."""
    X = del_direction(E, num_directions)
    return (X - X.mean(0, keepdim=True)) / X.std(0, keepdim=True).clamp(min=1e-12)

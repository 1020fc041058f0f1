"""The paper's post-processing baselines, applied to the whole embedding matrix.

DelDirection is the paper's Eq. 3 as printed (and Mu et al.'s Algorithm 1, All-but-the-Top):

    e_bar = (e - mu) - sum_{i=1..D} (u_i^T e) u_i,   u_1..u_D = PCA(E - 1 mu^T)

the mean removed, then the projections of the *uncentred* e on the top D principal directions
of the centred matrix subtracted. That differs from projecting the centred vector by one constant
row, sum_i (u_i^T mu) u_i, which Eq. 3's rows keep as their mean (so they are not centred, and
isotropy measured on them is lower). ``del_direction_centred`` projects the centred vector
(e - mu) instead: rows centred, the D directions removed exactly. Del-zscore (Sajjad et al. 2022)
is Eq. 3, then a z-score per dimension with the sample std (ddof 1; the paper does not say which,
the two differ by a factor sqrt(|V| / (|V| - 1))); its centring removes that constant row, so it
is the same whichever variant it starts from.

D = max(1, floor(d / 100)): the paper's D = h_e / 100 (BART-large, d = 1,024: 10; RoBERTa-base,
768: 7; all-MiniLM-L6-v2, 384: 3); below d = 100 that would be no direction at all, so one.

All act on the whole matrix E as Eq. 3 does (mu and the PCA over all |V| rows):
``defemb-surgery --method deldirection|deldirection-centred|del-zscore`` passes every row,
specials, ``<mask>`` and ``madeupword`` fillers included, and rewrites every row. Everything is
computed in float64 in row chunks (the mean, the centred Gram, its eigendecomposition, each output
row) and the result is returned as float32: no float64 copy of E, and the output is the float64
result rounded once (the z-score divides by per-dimension stds down to ~1e-2 of the largest, which
would amplify float32 rounding to ~1e-5).
"""
import numpy as np
import torch

from fairseq_defemb.analysis.isotropy import GRAM_ROWS, gram_matrix


def num_directions_for(dim: int) -> int:
    """The paper's D = h_e / 100, at least one direction."""
    return max(1, dim // 100)


def _pca(E: torch.Tensor, num_directions: int | None) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """(mu, the top D principal directions of E - 1 mu^T as d x D columns, the centred Gram), float64."""
    mean = sum(chunk.double().sum(0) for chunk in torch.split(E, GRAM_ROWS)) / E.size(0)
    gram = gram_matrix(E, centre=mean)
    count = num_directions or num_directions_for(E.size(1))
    _, vectors = np.linalg.eigh(gram)  # ascending eigenvalues
    return mean, torch.from_numpy(np.ascontiguousarray(vectors[:, ::-1][:, :count])), gram


def _row_map(E: torch.Tensor, transform) -> torch.Tensor:
    """``transform`` (float64 rows -> float64 rows) over E in row chunks, into a new float32 matrix."""
    out = torch.empty(E.shape, dtype=torch.float32)
    for start in range(0, E.size(0), GRAM_ROWS):
        out[start:start + GRAM_ROWS] = transform(E[start:start + GRAM_ROWS].double())
    return out


def del_direction(E: np.ndarray | torch.Tensor, num_directions: int | None = None) -> torch.Tensor:
    """Eq. 3: (e - mu) - sum_i (u_i^T e) u_i for every row e (a new float32 matrix; E is not written)."""
    E = torch.as_tensor(E)
    mean, U, _ = _pca(E, num_directions)
    return _row_map(E, lambda e: (e - mean) - (e @ U) @ U.T)


def del_direction_centred(E: np.ndarray | torch.Tensor, num_directions: int | None = None) -> torch.Tensor:
    """The centred variant: (e - mu) - sum_i (u_i^T (e - mu)) u_i."""
    E = torch.as_tensor(E)
    mean, U, _ = _pca(E, num_directions)
    return _row_map(E, lambda e: (e - mean) - ((e - mean) @ U) @ U.T)


def del_zscore(E: np.ndarray | torch.Tensor, num_directions: int | None = None) -> torch.Tensor:
    """Eq. 3, then (x - mean) / std per dimension (sample std). Eq. 3's column means are -(U U^T mu), so
    x - mean is the centred variant, X (I - U U^T), whose column variances are the diagonal of
    (I - U U^T) G (I - U U^T) / (|V| - 1) with G the centred Gram."""
    E = torch.as_tensor(E)
    mean, U, gram = _pca(E, num_directions)
    residual = np.eye(E.size(1)) - U.numpy() @ U.numpy().T
    std = torch.from_numpy(np.sqrt(np.diag(residual @ gram @ residual) / (E.size(0) - 1))).clamp(min=1e-12)
    return _row_map(E, lambda e: ((e - mean) - ((e - mean) @ U) @ U.T) / std)

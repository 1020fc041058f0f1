"""The paper's post-processing baselines, applied to the whole embedding matrix.

DelDirection (All-but-the-Top, Mu et al. 2018): subtract the mean, then the projections
on the top D = d/100 principal components *of the centred matrix*, applied to the centred
vectors (the authors' code projected the uncentred vectors). Del-zscore: DelDirection,
then a z-score per dimension (Sajjad et al. 2022), with the sample std (ddof 1).

Both act on the whole matrix E as the paper's Eq. 3 does (mu and the PCA over all |V| rows):
``defemb-surgery --method deldirection|del-zscore`` passes every row, specials, ``<mask>``
and ``madeupword`` fillers included, and rewrites every row. D = max(1, d // 100)
(BART-large, d = 1024: 10; RoBERTa-base, d = 768: 7).
"""
import numpy as np
import torch

from defemb.analysis.isotropy import gram_matrix


def principal_directions(X: torch.Tensor, count: int) -> torch.Tensor:
    """Top ``count`` principal directions (d x count) of an already centred float32 matrix: a float64
    eigendecomposition of X^T X, accumulated in float64 from float32 products (a float64 product
    over all rows would cost twice the time and two float64 copies of X)."""
    _, vectors = torch.linalg.eigh(gram_matrix(X))  # ascending eigenvalues
    return vectors[:, -count:].flip(-1).to(X.dtype)


def del_direction(E: np.ndarray | torch.Tensor, num_directions: int | None = None) -> torch.Tensor:
    E = torch.as_tensor(E).float()
    X = E - E.mean(0, keepdim=True)
    U = principal_directions(X, num_directions or max(1, E.size(1) // 100))
    return X.addmm_(X @ U, U.T, alpha=-1)  # X - (X U) U^T without a second full-size matrix


def del_zscore(E: np.ndarray | torch.Tensor, num_directions: int | None = None) -> torch.Tensor:
    X = del_direction(E, num_directions)
    return (X - X.mean(0, keepdim=True)) / X.std(0, keepdim=True).clamp(min=1e-12)

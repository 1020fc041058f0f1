"""Geometry preservation (Section 4, Figures 2 and 6): drift per frequency group and the 2D
projection on the first two singular vectors of the reference matrix."""
from pathlib import Path

import numpy as np
import torch

GROUP_COLOURS = {"frequent": "tab:blue", "medium": "tab:orange", "rare": "tab:red"}


def drift(before: np.ndarray | torch.Tensor, after: np.ndarray | torch.Tensor, groups: dict[str, np.ndarray]) -> dict:
    """Mean L2 distance and mean cosine between the same rows of two matrices, per group."""
    B, A = torch.as_tensor(before).float(), torch.as_tensor(after).float()
    result = {}
    for name, ids in groups.items():
        index = torch.as_tensor(np.asarray(ids), dtype=torch.long)
        b, a = B[index], A[index]
        result[name] = {
            "mean_l2": float((a - b).norm(dim=1).mean()),
            "mean_cosine": float(torch.nn.functional.cosine_similarity(a, b, dim=1).mean()),
        }
    return result


def projection_basis(reference: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and first two right singular vectors of the centred reference matrix."""
    R = torch.as_tensor(reference).double()
    mean = R.mean(0)
    _, vectors = torch.linalg.eigh((R - mean).T @ (R - mean))
    return mean, vectors[:, -2:].flip(-1)


def plot_projections(matrices: dict[str, np.ndarray | torch.Tensor], groups: dict[str, np.ndarray], path: str | Path,
                     reference: str | None = None, highlight: dict[str, int] | None = None,
                     own_basis: bool = False) -> None:
    """One panel per matrix, groups coloured. All panels share the reference's basis (so drift
    shows as movement), or with ``own_basis`` each uses its own (the paper's Figure 1: a random
    start and a trained matrix have no common principal directions)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(matrices)
    mean, basis = projection_basis(matrices[reference or names[0]])
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names):
        if own_basis:
            mean, basis = projection_basis(matrices[name])
        P = ((torch.as_tensor(matrices[name]).double() - mean) @ basis).numpy()
        for group, colour in GROUP_COLOURS.items():
            ids = np.asarray(groups[group])
            ax.scatter(P[ids, 0], P[ids, 1], s=1, alpha=0.35, c=colour, label=group, rasterized=True)
        for label, token in (highlight or {}).items():
            ax.annotate(label, P[token], fontsize=8)
            ax.scatter(*P[token], s=20, c="black", marker="x")
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][0].legend(markerscale=8, fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

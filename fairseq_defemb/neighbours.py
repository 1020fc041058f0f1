"""Semantic neighbourhoods: nearest neighbours, and the numeric Max Difference (Section 6.3).

Max Difference: for every numeric token, its three nearest numeric neighbours
(Euclidean, among numeric tokens only) and the largest |value difference| among them,
averaged over numeric tokens. Tokens with the same value (GPT-2's "2" and " 2") are
distinct tokens: each may be the other's neighbour, at a gap of 0.
"""
import json
from pathlib import Path

import numpy as np
import torch


def token_surfaces(dictionary, gpt2_encoder_json: str | Path | None = None) -> list[str]:
    """Each id's characters without the word-boundary marker (GPT-2 ids decoded when the
    encoder.json is given; WordPiece "##" and sentencepiece "▁" stripped)."""
    decoder = None
    if gpt2_encoder_json:
        from fairseq.data.encoders.gpt2_bpe_utils import bytes_to_unicode

        byte_decoder = {v: k for k, v in bytes_to_unicode().items()}
        encoder = json.loads(Path(gpt2_encoder_json).read_text())
        decoder = {v: bytearray(byte_decoder[c] for c in k).decode("utf-8", errors="replace") for k, v in encoder.items()}
    surfaces = []
    for symbol in dictionary.symbols:
        if decoder is not None and symbol.isdigit() and int(symbol) in decoder:
            surfaces.append(decoder[int(symbol)].strip())
        else:
            surfaces.append(symbol.removeprefix("##").lstrip("\u2581"))
    return surfaces


def numeric_tokens(surfaces: list[str], num_special: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(ids, values) of the tokens whose surface is all ASCII digits."""
    ids = [i for i, s in enumerate(surfaces) if i >= num_special and s.isascii() and s.isdigit() and len(s) <= 15]
    return np.asarray(ids, dtype=np.int64), np.asarray([int(surfaces[i]) for i in ids], dtype=np.float64)


def max_difference(E: np.ndarray | torch.Tensor, ids: np.ndarray, values: np.ndarray, k: int = 3) -> float:
    X = torch.as_tensor(np.asarray(E)[ids] if isinstance(E, np.ndarray) else E[torch.as_tensor(ids)]).double()
    if len(ids) <= k:
        raise ValueError(f"Max Difference needs more than {k} numeric tokens, got {len(ids)}")
    distances = torch.cdist(X, X)
    distances.fill_diagonal_(float("inf"))
    nearest = distances.topk(k, largest=False).indices.numpy()
    gaps = np.abs(values[nearest] - values[:, None]).max(axis=1)
    return float(gaps.mean())


def nearest_neighbours(E: np.ndarray | torch.Tensor, token_id: int, k: int = 10, metric: str = "cosine",
                       exclude: set[int] = frozenset()) -> list[tuple[int, float]]:
    X = torch.as_tensor(E).float()
    if metric == "cosine":
        X = torch.nn.functional.normalize(X, dim=1)
        score = X @ X[token_id]
    else:
        score = -(X - X[token_id]).norm(dim=1)
    score[token_id] = -float("inf")
    for i in exclude:
        score[i] = -float("inf")
    top = score.topk(k)
    return [(int(i), float(s)) for i, s in zip(top.indices, top.values)]

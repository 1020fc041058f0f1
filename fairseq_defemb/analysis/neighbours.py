"""Semantic neighbourhoods: nearest neighbours, and the numeric Max Difference (Section 6.3).

Max Difference: for every numeric token, its three nearest numeric neighbours
(Euclidean, among numeric tokens only) and the largest |value difference| among them,
averaged over numeric tokens. Duplicates: tokens with the same value (GPT-2's "2" and
" 2", or "02" and "2") are kept as distinct tokens: each may be the other's neighbour, at a
gap of 0 (the paper counts numeric *subwords*, 492 of them in BART's vocabulary, so both
forms count). Ties in distance are broken by ``torch.topk`` (lowest index first in practice).

Surfaces: GPT-2 BPE dict.txt files (bart.large, roberta.base) list ids of encoder.json, not
text; pass the encoder.json to decode them (``token_surfaces``). Without it such a dictionary
would look all-numeric, so ``looks_like_gpt2_ids`` lets callers refuse numeric analysis.
WordPiece ``##`` and sentencepiece ``\u2581`` markers are stripped; GPT-2's leading space
(``\u0120``, "G-dot") is stripped after decoding.
"""
import json
from pathlib import Path

import numpy as np
import torch

from fairseq_defemb.data.gpt2_bpe import gpt2_bpe_utils


def token_surfaces(dictionary, gpt2_encoder_json: str | Path | None = None) -> list[str]:
    """Each id's characters without the word-boundary marker (GPT-2 ids decoded when the
    encoder.json is given; WordPiece "##" and sentencepiece "▁" stripped)."""
    decoder = None
    if gpt2_encoder_json:
        byte_decoder = {v: k for k, v in gpt2_bpe_utils().bytes_to_unicode().items()}
        encoder = json.loads(Path(gpt2_encoder_json).read_text())
        decoder = {v: bytearray(byte_decoder[c] for c in k).decode("utf-8", errors="replace") for k, v in encoder.items()}
    surfaces = []
    for symbol in dictionary.symbols:
        if decoder is not None and symbol.isdigit() and int(symbol) in decoder:
            surfaces.append(decoder[int(symbol)].strip())
        else:
            surfaces.append(symbol.removeprefix("##").lstrip("\u2581"))
    return surfaces


def word_initial_pieces(dictionary, gpt2_encoder_json: str | Path | None = None) -> list[bool]:
    """Per id: does the piece start a word? (GPT-2: its bytes start with a space, when the
    encoder.json is given; WordPiece: no ``##``; sentencepiece: a leading ``\u2581``.)"""
    decoder = None
    if gpt2_encoder_json:
        decoder = {v: k for k, v in json.loads(Path(gpt2_encoder_json).read_text()).items()}
    sentencepiece = any(s.startswith("\u2581") for s in dictionary.symbols)
    flags = []
    for symbol in dictionary.symbols:
        if decoder is not None and symbol.isdigit() and int(symbol) in decoder:
            flags.append(decoder[int(symbol)].startswith("\u0120"))
        elif sentencepiece:
            flags.append(symbol.startswith("\u2581"))
        else:
            flags.append(not symbol.startswith("##"))
    return flags


def looks_like_gpt2_ids(dictionary) -> bool:
    """True if (almost) every non-special symbol is a decimal number: GPT-2 BPE ids, not text."""
    symbols = [s for s in dictionary.symbols[dictionary.nspecial:] if not (s.startswith("<") and s.endswith(">"))]
    if len(symbols) < 50:
        return False
    return sum(s.isdigit() for s in symbols) / len(symbols) > 0.9


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
    """The ``k`` nearest rows to ``token_id`` (itself and ``exclude`` left out) with their
    cosine similarity, or minus their Euclidean distance (higher = nearer either way)."""
    X = torch.as_tensor(E).float()
    if metric == "cosine":
        X = torch.nn.functional.normalize(X, dim=1)
        score = X @ X[token_id]
    elif metric == "euclidean":
        score = -(X - X[token_id]).norm(dim=1)
    else:
        raise ValueError(f"metric must be 'cosine' or 'euclidean', not {metric!r}")
    score[token_id] = -float("inf")
    for i in exclude:
        score[i] = -float("inf")
    top = score.topk(k)
    return [(int(i), float(s)) for i, s in zip(top.indices, top.values)]

"""The new-word check: does a new token's row land next to the words a reader would call related?

A file of words absent from the vocabulary, each with a part of speech, a definition written for
the check and the in-vocabulary words a reader would call related (``word<TAB>pos<TAB>definition
<TAB>related,related,...``). For each word's new row, the rank of every related word among the
existing rows by cosine (specials left out); a word scores its best related word's rank. The
summary: the median of those best ranks and the share of words with a related word in the top 10.
"""
from pathlib import Path

import numpy as np


class NewWordsError(ValueError):
    """A new-words file that cannot be read; the message names the file and line."""


def read_new_words(path: str | Path, vocabulary: dict[str, int]) -> list[dict]:
    """The file's words: ``{"word", "pos", "definition", "related": [ids]}``. A word already in the
    vocabulary, or a related word that is not one token of it, is an error naming the line."""
    path = Path(path)
    words = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 4:
            raise NewWordsError(f"{path}:{lineno}: not word<TAB>pos<TAB>definition<TAB>related,related,...")
        word, pos, definition, related = (f.strip() for f in fields)
        if word in vocabulary:
            raise NewWordsError(f"{path}:{lineno}: {word!r} is already a token (id {vocabulary[word]}): not a new word")
        missing = [r for r in related.split(",") if r.strip() not in vocabulary]
        if missing or not related:
            raise NewWordsError(f"{path}:{lineno}: related word(s) {missing} not single tokens of the vocabulary")
        words.append({"word": word, "pos": pos, "definition": definition,
                      "related": [vocabulary[r.strip()] for r in related.split(",")]})
    if not words:
        raise NewWordsError(f"{path}: no word")
    return words


def best_related_ranks(rows: np.ndarray, matrix: np.ndarray, related: list[list[int]], excluded: set[int]) -> np.ndarray:
    """Per new row, the best rank (1 = nearest) of its related ids among the rows of ``matrix`` not
    in ``excluded``, by cosine; ties count against the related word."""
    def unit(x):
        norms = np.linalg.norm(x, axis=-1, keepdims=True)
        return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)

    keep = np.ones(len(matrix), dtype=bool)
    keep[list(excluded)] = False
    cos = unit(np.asarray(rows, dtype=np.float64)) @ unit(np.asarray(matrix, dtype=np.float64)).T
    best = np.empty(len(rows), dtype=np.int64)
    for i, ids in enumerate(related):
        scores = cos[i][keep]
        best[i] = min(int((scores >= cos[i, t]).sum()) for t in ids)
    return best


def summary(best: np.ndarray) -> dict:
    return {"words": int(len(best)), "median_best_rank": float(np.median(best)),
            "share_top10": float((best <= 10).mean()), "share_top1": float((best <= 1).mean())}

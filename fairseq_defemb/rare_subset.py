"""The rare-token test subset of Appendix B.2.

Keep test pairs whose target tokens all occur in the training data and at least
``min_fraction`` of whose target tokens have an id above ``threshold`` (paper, BART:
5% above 40,000), i.e. belong to the rare end of the frequency-ordered dictionary.
"""
from typing import Iterable, Sequence

import numpy as np


def rare_subset(targets: Sequence[Sequence[int]], train_tokens: Iterable[int], threshold: int = 40000,
                min_fraction: float = 0.05, ignore: Iterable[int] = (0, 1, 2, 3)) -> list[int]:
    """Indices of the test targets that qualify."""
    known = set(train_tokens)
    skip = set(ignore)
    chosen = []
    for index, target in enumerate(targets):
        tokens = np.asarray([t for t in target if t not in skip])
        if tokens.size == 0 or not all(int(t) in known for t in tokens):
            continue
        if (tokens > threshold).mean() >= min_fraction:
            chosen.append(index)
    return chosen

"""The rare-token test subset of Appendix B.2.

Keep test pairs whose target tokens all occur in the training data (any side) and at least
``min_fraction`` of whose target tokens have an id above ``threshold`` (paper, BART:
5% above 40,000; T5: 8.3% above 24,000), i.e. belong to the rare end of the frequency-ordered
dictionary. Special ids (``ignore``: fairseq's <s> <pad> </s> <unk>) are not counted.
"""
from typing import Iterable, Sequence

import numpy as np

from fairseq_defemb.data.indexed import read_items


def rare_subset(targets: Sequence[Sequence[int]], train_tokens: Iterable[int], threshold: int = 40000,
                min_fraction: float = 0.05, ignore: Iterable[int] = (0, 1, 2, 3),
                replaceable: Iterable[int] | None = None) -> list[int]:
    """Indices of the test targets that qualify.

    ``replaceable``: if given, a token above ``threshold`` counts as rare only if it is in this
    set (the paper: "these tokens' embeddings can be replaced by DefinitionEMB", i.e. they have a
    definition); None counts every id above the threshold.
    """
    if not 0 <= min_fraction <= 1:
        raise ValueError(f"min_fraction is a share in [0, 1], got {min_fraction}")
    known = set(train_tokens)
    can_replace = None if replaceable is None else np.asarray(sorted(set(replaceable)), dtype=np.int64)
    skip = set(ignore)
    chosen = []
    for index, target in enumerate(targets):
        tokens = np.asarray([int(t) for t in target if int(t) not in skip], dtype=np.int64)
        if tokens.size == 0 or not all(int(t) in known for t in tokens):
            continue
        rare = tokens > threshold
        if can_replace is not None:
            rare &= np.isin(tokens, can_replace)
        if rare.mean() >= min_fraction:
            chosen.append(index)
    return chosen


def load_binarized(data_dir: str, split: str) -> list[list[int]]:
    """Token-id sequences of a fairseq-binarized split (``{data_dir}/{split}.bin/.idx``,
    e.g. ``test.source-target.target`` as ``fairseq-preprocess`` names it), trailing ``</s>`` kept."""
    try:
        return [item.tolist() for item in read_items(f"{data_dir}/{split}")]
    except FileNotFoundError:
        raise FileNotFoundError(f"{data_dir}/{split}.bin/.idx: no binarized fairseq dataset there") from None


def rare_subset_binarized(data_dir: str, test_split: str = "test.source-target.target",
                          train_splits: Sequence[str] = ("train.source-target.source", "train.source-target.target"),
                          threshold: int = 40000,
                          min_fraction: float = 0.05, ignore: Iterable[int] = (0, 1, 2, 3),
                          replaceable: Iterable[int] | None = None) -> list[int]:
    """``rare_subset`` on fairseq-binarized targets: test pairs kept, as indices into the test split
    (the line numbers of the raw test.source/test.target). A token "occurs in training" if it is
    in any of ``train_splits`` (default: articles and summaries)."""
    seen: set[int] = set()
    for split in train_splits:
        for sequence in load_binarized(data_dir, split):
            seen.update(sequence)
    return rare_subset(load_binarized(data_dir, test_split), seen, threshold, min_fraction, ignore, replaceable)

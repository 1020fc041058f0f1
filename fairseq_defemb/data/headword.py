"""The headword's own ids outside its variant spans: a definition that names its headword
("sediment: the matter of a sediment layer") lets a model copy the id instead of reading
the definition. ``echo_positions`` finds them; the cloze dataset's
``mask_headword_everywhere`` hides them and ``defemb-corpus`` counts the prompts that have any."""
from collections.abc import Sequence

import numpy as np


def echo_positions(prompt: Sequence[int], spans: Sequence) -> np.ndarray:
    """Positions outside every ``[start, end)`` span of ``spans`` (num_spans x 2) whose id is one
    of the ids inside the spans (the headword's subwords), ascending."""
    # Plain Python on lists: prompts are a few dozen ids, and defemb-corpus counts this over every
    # prompt it builds (hundreds of thousands), where numpy's per-call overhead was most of the cost.
    ids = prompt.tolist() if isinstance(prompt, np.ndarray) else list(prompt)
    bounds = np.asarray(spans).reshape(-1, 2).tolist() if isinstance(spans, np.ndarray) else spans
    inside = [False] * len(ids)
    for start, end in bounds:
        inside[start:end] = [True] * (end - start)
    headword = {t for t, i in zip(ids, inside) if i}
    return np.array([k for k, (t, i) in enumerate(zip(ids, inside)) if not i and t in headword], dtype=np.int64)

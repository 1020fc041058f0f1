"""The headword's own ids outside its variant spans: a definition that names its headword
("sediment: the matter of a sediment layer") lets a model copy the id instead of reading
the definition. ``echo_positions`` finds them; the cloze dataset's
``mask_headword_everywhere`` hides them and ``defemb-corpus`` counts the prompts that have any."""
import numpy as np


def echo_positions(prompt: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """Positions outside every ``[start, end)`` span of ``spans`` (num_spans x 2) whose id is one
    of the ids inside the spans (the headword's subwords), ascending."""
    prompt = np.asarray(prompt)
    inside = np.zeros(len(prompt), dtype=bool)
    for start, end in np.asarray(spans).reshape(-1, 2):
        inside[start:end] = True
    return np.nonzero(~inside & np.isin(prompt, prompt[inside]))[0]

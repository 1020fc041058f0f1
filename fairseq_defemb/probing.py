"""Probing numeric semantics in the final layer (Section 6.2, Table 7, Appendix B.3).

A frozen fine-tuned model encodes single input words; a small classifier learns
"numeric < 1000" / "numeric > 1000" / "other" from their final-layer states and is
scored on rare numeric and rare non-numeric tokens.
"""
import numpy as np
import torch

LABELS = ("numeric<1000", "numeric>1000", "other")


def label_of(word: str) -> str:
    word = word.strip()
    if word.isascii() and word.isdigit():
        return LABELS[0] if int(word) < 1000 else LABELS[1]
    return LABELS[2]


@torch.no_grad()
def final_layer_states(model, token_ids: list[list[int]], bos: int, eos: int) -> np.ndarray:
    """Mean final-layer state over each word's subwords, encoded alone as ``<s> word </s>``.

    ``model`` is a fairseq RoBERTa or BART model (``.encoder`` as in fairseq); BART is
    probed through its encoder, whose output the decoder reads.
    """
    model.eval()
    states = []
    for ids in token_ids:
        tokens = torch.tensor([[bos, *ids, eos]])
        if hasattr(model.encoder, "extract_features"):
            hidden, _ = model.encoder.extract_features(tokens)
            hidden = hidden[0]
        else:
            hidden = model.encoder(tokens, src_lengths=torch.tensor([tokens.size(1)]))["encoder_out"][0][:, 0]
        states.append(hidden[1:-1].mean(0).float().numpy())
    return np.stack(states)


def probe(train_x: np.ndarray, train_y: list[str], test_x: np.ndarray, test_y: list[str], seed: int = 0) -> dict:
    """Logistic-regression probe; accuracy overall and on numeric / non-numeric test words."""
    from sklearn.linear_model import LogisticRegression

    classifier = LogisticRegression(max_iter=2000, random_state=seed).fit(train_x, train_y)
    predicted = classifier.predict(test_x)
    test_y = np.asarray(test_y)
    numeric = test_y != LABELS[2]
    result = {"accuracy": float((predicted == test_y).mean())}
    for name, mask in (("numeric", numeric), ("non_numeric", ~numeric)):
        if mask.any():
            result[f"accuracy_{name}"] = float((predicted[mask] == test_y[mask]).mean())
    return result

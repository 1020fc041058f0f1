"""Probing numeric semantics in the final layer (Section 6.2, Table 7, Appendix B.3).

A frozen fine-tuned model encodes single input words; a small classifier learns
"numeric < 1000" / "numeric > 1000" / "other" from their final-layer states and is
scored on rare numeric and rare non-numeric tokens.

Paper setup (Table 22): train/validation = numbers 0..1999 and 1,000 non-numeric dictionary
words, split 9:1; test = 78 rare numeric tokens (id > 40,000, "G-dot"-prefixed, i.e. word
initial) and 78 rare non-numeric ones, no overlap with training. ``split_train_validation``
does the 9:1 split, ``hub_word_states`` encodes words with a fairseq hub model
(``RobertaModel.from_pretrained(...)`` / ``BARTModel.from_pretrained(...)``), ``probe`` trains
a logistic regression and reports accuracy on the rare numeric and rare non-numeric test words.
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


@torch.no_grad()
def hub_word_states(hub, words: list[str], prefix_space: bool = True) -> np.ndarray:
    """Final-layer states of single words through a fairseq RoBERTa/BART hub interface.

    Each word is encoded alone (``hub.encode``: GPT-2 BPE, ``<s> ... </s>``); with
    ``prefix_space`` the word is encoded as " word", the word-initial ("G-dot") form the paper
    probes. A word split into several subwords gets the mean of their states.
    """
    dictionary = hub.task.source_dictionary
    token_ids = []
    for word in words:
        tokens = hub.encode((" " + word) if prefix_space else word)
        token_ids.append(tokens[1:-1].tolist())
    return final_layer_states(hub.model, token_ids, dictionary.bos(), dictionary.eos())


def split_train_validation(n: int, validation_share: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a seeded 9:1 (by default) train/validation split of ``n`` items."""
    order = np.random.default_rng(seed).permutation(n)
    n_valid = int(round(validation_share * n))
    return np.sort(order[n_valid:]), np.sort(order[:n_valid])


def probe(train_x: np.ndarray, train_y: list[str], test_x: np.ndarray, test_y: list[str], seed: int = 0,
          valid_x: np.ndarray | None = None, valid_y: list[str] | None = None, C: float = 1.0) -> dict:
    """Logistic-regression probe (features standardised on the training set).

    Returns accuracy on the test words overall, ``accuracy_numeric`` (the paper's rare numeric
    tokens: either numeric label) and ``accuracy_non_numeric`` (rare "other" tokens), and
    ``validation_accuracy`` if a validation set is given.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    unknown = set(train_y) - set(LABELS)
    if unknown:
        raise ValueError(f"labels must be among {LABELS}, got {sorted(unknown)}")
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=C, random_state=seed))
    classifier.fit(np.asarray(train_x), list(train_y))
    predicted = classifier.predict(np.asarray(test_x))
    test_y = np.asarray(test_y)
    numeric = test_y != LABELS[2]
    result = {"accuracy": float((predicted == test_y).mean()), "n_test": int(len(test_y))}
    if valid_x is not None and valid_y is not None:
        result["validation_accuracy"] = float((classifier.predict(np.asarray(valid_x)) == np.asarray(valid_y)).mean())
    for name, mask in (("numeric", numeric), ("non_numeric", ~numeric)):
        if mask.any():
            result[f"accuracy_{name}"] = float((predicted[mask] == test_y[mask]).mean())
    return result

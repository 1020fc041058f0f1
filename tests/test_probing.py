"""Numeric probing of final-layer states (Section 6.2, Appendix B.3)."""
import numpy as np
import pytest

from fairseq_defemb.analysis.probing import LABELS, label_of, probe, split_train_validation


def _synthetic(rng, words, centres, noise=1.0):
    labels = [label_of(w) for w in words]
    return np.stack([centres[label] + noise * rng.normal(size=16) for label in labels]), labels


def test_labels_and_split():
    assert label_of("999") == "numeric<1000" and label_of("1001") == "numeric>1000" and label_of("x1") == "other"
    assert label_of(" 42") == "numeric<1000" and label_of("\u00bd") == "other"
    train, valid = split_train_validation(100)
    assert len(train) == 90 and len(valid) == 10 and not set(train) & set(valid)
    assert np.array_equal(split_train_validation(100)[1], valid)


def test_probe_on_separable_data_and_chance_on_noise():
    rng = np.random.default_rng(0)
    centres = {label: rng.normal(size=16) * 4 for label in LABELS}
    words = [str(n) for n in rng.integers(0, 999, 300)] + [str(n) for n in rng.integers(1001, 1999, 300)] + \
        [f"w{i}" for i in range(300)]
    X, y = _synthetic(rng, words, centres)
    train, valid = split_train_validation(len(words))
    test_words = [str(n) for n in rng.integers(1000, 99999, 30)] + [f"rare{i}" for i in range(30)]
    Xt, yt = _synthetic(rng, test_words, centres)
    result = probe(X[train], [y[i] for i in train], Xt, yt, valid_x=X[valid], valid_y=[y[i] for i in valid])
    assert result["accuracy"] > 0.95 and result["accuracy_numeric"] > 0.95 and result["accuracy_non_numeric"] > 0.95
    assert result["validation_accuracy"] > 0.95 and result["n_test"] == 60
    # Same labels, states carrying no label information: near chance, far from the separable case.
    noise = probe(rng.normal(size=X.shape), y, rng.normal(size=Xt.shape), yt)
    assert noise["accuracy"] < 0.7
    with pytest.raises(ValueError):
        probe(X, ["numeric"] * len(X), Xt, yt)


@pytest.mark.parametrize("family", ["roberta", "bart"])
def test_final_layer_states_of_a_real_fairseq_model(tiny_dir, family):
    from fairseq import checkpoint_utils

    from fairseq_defemb.analysis.probing import final_layer_states

    models, _, task = checkpoint_utils.load_model_ensemble_and_task([str(tiny_dir / family / "model.pt")])
    d = task.source_dictionary
    words = [[d.index("cat")], [d.index("quagga"), d.index("okapi")], [d.index("cat")]]
    states = final_layer_states(models[0], words, d.bos(), d.eos())
    assert states.shape == (3, 32) and np.isfinite(states).all()
    assert not np.allclose(states[0], states[1]) and np.allclose(states[0], states[2], atol=1e-5)

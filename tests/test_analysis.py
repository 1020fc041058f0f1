"""Isotropy, Max Difference, drift, ROUGE, bootstrap, probing and the analyze CLI (issue 5)."""
import json

import numpy as np
import pytest
import torch

from fairseq_defemb.analyze import cli_main
from fairseq_defemb.geometry import drift
from fairseq_defemb.isotropy import isotropy, isotropy_by_group
from fairseq_defemb.neighbours import max_difference
from fairseq_defemb.probing import LABELS, label_of, probe
from fairseq_defemb.rare_subset import rare_subset
from fairseq_defemb.rouge import rouge_python
from fairseq_defemb.significance import paired_bootstrap


def naive_isotropy(E: np.ndarray) -> float:
    """Mu et al.'s definition, literally: eig of E^T E, an explicit loop over the
    eigenvectors and their negations (both are eigenvectors)."""
    _, vectors = np.linalg.eig(E.T @ E)
    z = [np.exp(E @ (sign * np.real(vectors[:, i]))).sum() for i in range(E.shape[1]) for sign in (1, -1)]
    return min(z) / max(z)


def test_isotropic_matrix_scores_near_one_in_closed_form():
    # Rows +-s_i e_i: the eigenvectors are the axes and Z(+-e_i) = 2 cosh(s_i) + 2 (d - 1).
    d = 16
    scales = 3.0 + 1e-3 * np.arange(d)  # distinct, so the eigenvectors are unique
    E = np.concatenate([np.diag(scales), -np.diag(scales)])
    z = 2 * np.cosh(scales) + 2 * (d - 1)
    assert isotropy(E) == pytest.approx(z.min() / z.max(), rel=1e-6)  # float32 projections
    assert isotropy(E) > 0.99


def test_collapsed_matrix_scores_near_zero():
    rng = np.random.default_rng(0)
    E = rng.normal(size=(2000, 32)) * 0.01 + 5.0 * rng.normal(size=32)  # a narrow cone
    assert isotropy(E) < 1e-3
    assert isotropy(E - E.mean(0)) > 0.5  # centring restores it


def test_matches_naive_and_ignores_row_order():
    rng = np.random.default_rng(1)
    E = rng.normal(size=(300, 12)) * 0.3 + 0.2 * rng.normal(size=12)
    assert isotropy(E) == pytest.approx(naive_isotropy(E), rel=1e-6)
    assert isotropy(E[rng.permutation(300)]) == pytest.approx(isotropy(E), rel=1e-9)


def test_no_clipping_for_large_norms():
    """exp overflows in float64 here; log-sum-exp still gives the exact ratio."""
    E = np.array([[800.0, 0.0], [-800.0, 0.0], [0.0, 810.0], [0.0, -810.0]])
    assert isotropy(E) == pytest.approx(np.exp(800 - 810), rel=1e-6)


def test_groups_match_separate_computation():
    rng = np.random.default_rng(2)
    E = rng.normal(size=(100, 8)) + np.linspace(0, 3, 100)[:, None]
    groups = {"frequent": np.arange(0, 30), "medium": np.arange(30, 80), "rare": np.arange(80, 100), "all": np.arange(100)}
    by_group = isotropy_by_group(E, groups)
    for name, ids in groups.items():
        assert by_group[name] == pytest.approx(isotropy(E[ids]), rel=1e-6)


def test_max_difference_hand_worked():
    # values 1, 2, 3, 100 on a line; nearest 3 of each = the other three
    ids = np.arange(4)
    values = np.array([1.0, 2.0, 3.0, 100.0])
    E = np.array([[0.0], [1.0], [2.0], [50.0]])
    # gaps: 1 -> max(1,2,99)=99; 2 -> 98; 3 -> 97; 100 -> 99; mean 98.25
    assert max_difference(E, ids, values) == pytest.approx(98.25)
    E5 = np.array([[0.0], [1.0], [2.0], [3.0], [100.0]])
    values5 = np.array([10.0, 20.0, 30.0, 40.0, 50.0])
    # 10: nn 20,30,40 -> 30; 20: 10,30,40 -> 20; 30: 20,40,10 -> 20; 40: 30,20,10 -> 30; 50: 40,30,20 -> 30
    assert max_difference(E5, np.arange(5), values5) == pytest.approx(26.0)


def test_drift():
    before = np.eye(4)
    after = before.copy()
    after[3] = [0, 0, 0, 2]
    result = drift(before, after, {"rare": np.array([3]), "frequent": np.array([0, 1])})
    assert result["rare"] == {"mean_l2": 1.0, "mean_cosine": 1.0}
    assert result["frequent"]["mean_l2"] == 0.0


def test_bootstrap_known_answers():
    rng = np.random.default_rng(0)
    base = rng.normal(size=300)
    better = paired_bootstrap(base, base + 0.5)
    assert better["p_value"] == 0.0 and better["delta"] == pytest.approx(0.5)
    same = paired_bootstrap(base, base.copy())
    assert same["p_value"] == 1.0  # never strictly better
    noisy = paired_bootstrap(base, base + rng.normal(size=300))
    assert 0.05 < noisy["p_value"] < 0.95


def test_rouge_python_on_a_hand_example():
    scores = rouge_python(["the cat sat on the mat"], ["the cat is on the mat"])
    # unigrams: 5 of 6 match both ways -> F1 83.33; bigrams: "the cat", "on the", "the mat" -> 3/5
    assert scores["rouge1"] == pytest.approx(500 / 6)
    assert scores["rouge2"] == pytest.approx(60.0)


def test_rare_subset():
    targets = [[5, 6, 45000], [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 41000],
               [5, 99999], [5, 6]]
    train = set(range(50000))
    # 1/3 rare: yes; 1/21 < 5%: no; 99999 unseen: no; no rare token: no
    assert rare_subset(targets, train, threshold=40000, min_fraction=0.05) == [0]


def test_probe_on_separable_data():
    rng = np.random.default_rng(0)
    centres = {label: rng.normal(size=16) * 4 for label in LABELS}
    words = [str(rng.integers(0, 999)) for _ in range(60)] + [str(rng.integers(1001, 99999)) for _ in range(60)] + ["cat"] * 60
    labels = [label_of(w) for w in words]
    X = np.stack([centres[label] + rng.normal(size=16) for label in labels])
    result = probe(X[::2], labels[::2], X[1::2], labels[1::2])
    assert result["accuracy"] > 0.95 and result["accuracy_numeric"] > 0.95
    assert label_of("999") == "numeric<1000" and label_of("1001") == "numeric>1000" and label_of("x1") == "other"


def test_analyze_cli_end_to_end(tmp_path):
    from tiny_models import write_dict

    words = [str(n) for n in range(1, 40)] + ["cat", "dog", "quagga", "okapi"] + [f"w{i}" for i in range(100)]
    write_dict(tmp_path / "dict.txt", words)
    n = len(words) + 5
    rng = np.random.default_rng(0)
    W = torch.tensor(rng.normal(size=(n, 16)), dtype=torch.float32)
    for name, matrix in (("A", W), ("B", W + 0.01)):
        (tmp_path / name).mkdir()
        torch.save({"model": {"encoder.embed_tokens.weight": matrix, "decoder.embed_tokens.weight": matrix,
                              "decoder.output_projection.weight": matrix}, "cfg": None}, tmp_path / name / "model.pt")
    out = tmp_path / "report"
    assert cli_main(["--checkpoint", str(tmp_path / "A" / "model.pt"), "--compare", str(tmp_path / "B" / "model.pt"),
                     "--dict", str(tmp_path / "dict.txt"), "--neighbours-of", "quagga", "--out", str(out), "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["numeric_tokens"] == 39
    assert report["matrices"]["A"]["isotropy"]["all"] == pytest.approx(isotropy(W[4:-1].numpy()), rel=1e-6)
    assert report["drift"]["all"]["mean_cosine"] > 0.99
    assert (out / "projection.png").stat().st_size > 1000 and "| A |" in (out / "summary.md").read_text()


@pytest.mark.parametrize("family", ["roberta", "bart"])
def test_final_layer_states_of_a_real_fairseq_model(tiny_dir, family):
    from fairseq import checkpoint_utils

    from fairseq_defemb.probing import final_layer_states

    models, _, task = checkpoint_utils.load_model_ensemble_and_task([str(tiny_dir / family / "model.pt")])
    d = task.source_dictionary
    words = [[d.index("cat")], [d.index("quagga"), d.index("okapi")]]
    states = final_layer_states(models[0], words, d.bos(), d.eos())
    assert states.shape == (2, 32) and np.isfinite(states).all()
    # A word's state depends on the word: different inputs, different states.
    assert not np.allclose(states[0], states[1])

"""defemb-surgery: selection, writing, baselines, verification and bad input (issue 4)."""
import json
import subprocess

import numpy as np
import pytest
import torch
from fairseq.data import Dictionary, indexed_dataset

from conftest import REPO, VENV_BIN
from fairseq_defemb.embedding_file import PredictedEmbeddings
from fairseq_defemb.postprocessing import del_direction, del_zscore
from fairseq_defemb.selection import select_rows
from fairseq_defemb.checkpoint_embeddings import load_checkpoint as load_state
from fairseq_defemb.surgery import cli_main, verify
from fairseq_defemb.vocabulary import dictionary_sha256, load_model_dictionary
from tiny_models import TINY_WORDS, write_dict


def test_selection_hand_worked():
    d = Dictionary()
    for w in "a b c d e f g h i j".split():  # ids 4..13, most to least frequent
        d.add_symbol(w)
    d.add_symbol("<mask>")  # id 14, never selected
    task = {d.index(w) for w in "a c d f g i j".split()} | {0, 2, 14}
    predicted = {d.index(w) for w in "c f g j".split()}
    # |V| = 10 non-special symbols; alpha 40 -> budget 4: the 4 rarest task tokens g? no:
    # task tokens in frequency order: a c d f g i j -> last 4: f g i j; i has no definition.
    s = select_rows(d, task, predicted, 40)
    assert s.budget == 4 and s.task_vocabulary == 7
    assert s.requested == [d.index(w) for w in "f g i j".split()]
    assert s.replaced == [d.index(w) for w in "f g j".split()]
    assert s.without_definition == [d.index("i")]
    # alpha 100: budget capped by |V_task|.
    assert select_rows(d, task, predicted, 100).budget == 7
    assert select_rows(d, task, predicted, 0).requested == []
    with pytest.raises(ValueError, match="alpha"):
        select_rows(d, task, predicted, 101)


@pytest.fixture()
def inputs(tiny_dir, tmp_path):
    """Task data binarized with the tiny dictionary, and predictions for a few tokens."""
    d = load_model_dictionary(tiny_dir / "roberta" / "dict.txt")
    (tmp_path / "task").mkdir()
    builder = indexed_dataset.MMapIndexedDatasetBuilder(str(tmp_path / "task" / "train.bin"), dtype=np.uint16)
    for line in ("the cat and the dog", "quagga okapi dugong zebu emu gnu yak"):
        builder.add_item(torch.tensor([d.index(w) for w in line.split()]))
    builder.finalize(str(tmp_path / "task" / "train.idx"))
    words = ["quagga", "okapi", "zebu", "emu", "gnu", "cat"]
    torch.manual_seed(1)
    PredictedEmbeddings(
        token_ids=torch.tensor([d.index(w) for w in words]), embeddings=torch.randn(len(words), 32),
        num_definitions=torch.ones(len(words), dtype=torch.long), embedding_dim=32,
        dictionary_sha256=dictionary_sha256(tiny_dir / "roberta" / "dict.txt"), dictionary_size=len(d),
    ).save(tmp_path / "defemb.pt")
    return tmp_path, d


def surgery_args(tiny_dir, family, tmp, *extra):
    return ["--checkpoint", str(tiny_dir / family / "model.pt"), "--dict", str(tiny_dir / family / "dict.txt"),
            "--embeddings", str(tmp / "defemb.pt"), "--task-data", str(tmp / "task"), *extra]


@pytest.mark.parametrize("family", ["bart", "roberta"])
def test_surgery_writes_every_tied_copy_and_nothing_else(tiny_dir, inputs, family):
    tmp, d = inputs
    out = tmp / "out"
    original_bytes = (tiny_dir / family / "model.pt").read_bytes()
    assert cli_main(surgery_args(tiny_dir, family, tmp, "--alpha", "10", "--out", str(out))) == 0
    assert (tiny_dir / family / "model.pt").read_bytes() == original_bytes  # input untouched
    report = json.loads((out / "surgery.json").read_text())
    # |V| = 99 -> budget floor(9.9) = 9 of the 11 task tokens: all but "the" and "and"...
    # the 7 animal words and cat/dog; the predicted ones among them are replaced.
    assert report["budget"] == 9
    assert sorted(report["changed_ids"]) == sorted(d.index(w) for w in ["quagga", "okapi", "zebu", "emu", "gnu", "cat"])
    assert report["requested_without_definition"] == 3  # dog, dugong, yak
    new, old = load_state(out), load_state(tiny_dir / family)
    predicted = PredictedEmbeddings.load(tmp / "defemb.pt")
    keys = report["embedding_keys"]
    assert len(keys) == (3 if family == "bart" else 2)
    for key in keys:
        for token, vector in zip(predicted.token_ids.tolist(), predicted.embeddings):
            assert torch.equal(new["model"][key][token], vector)
        assert torch.equal(new["model"][key], new["model"][keys[0]])
    for key in set(new["model"]) - set(keys):
        assert torch.equal(new["model"][key], old["model"][key]), key
    assert new["cfg"] == old["cfg"]
    assert verify(out, tiny_dir / family) == (True, [])
    assert (out / "dict.txt").read_bytes() == (tiny_dir / family / "dict.txt").read_bytes()


def test_verify_catches_tampering(tiny_dir, inputs):
    tmp, d = inputs
    out = tmp / "out"
    assert cli_main(surgery_args(tiny_dir, "bart", tmp, "--out", str(out))) == 0
    # Not memory-mapped: we rewrite the very file.
    state = torch.load(out / "model.pt", map_location="cpu", weights_only=False)
    state["model"]["encoder.layers.0.fc1.bias"] = state["model"]["encoder.layers.0.fc1.bias"] + 1e-3
    state["model"]["decoder.embed_tokens.weight"] = state["model"]["decoder.embed_tokens.weight"].clone()
    state["model"]["decoder.embed_tokens.weight"][d.index("the")] += 1
    torch.save(state, out / "model.pt")
    ok, problems = verify(out, tiny_dir / "bart")
    assert not ok
    assert any("fc1.bias: changed" in p for p in problems)
    assert any("decoder.embed_tokens.weight: rows outside" in p for p in problems)
    assert cli_main(["--verify", str(out), "--against", str(tiny_dir / "bart")]) == 1


def test_dry_run_writes_nothing(tiny_dir, inputs, capsys):
    tmp, _ = inputs
    assert cli_main(surgery_args(tiny_dir, "roberta", tmp, "--dry-run")) == 0
    assert "would change" in capsys.readouterr().out and not (tmp / "out").exists()


def test_deldirection_matches_numpy():
    rng = np.random.default_rng(0)
    E = rng.normal(size=(500, 200)) + rng.normal(size=200) * 3 + np.outer(rng.normal(size=500), rng.normal(size=200))
    X = E - E.mean(0)
    _, _, vt = np.linalg.svd(X, full_matrices=False)
    U = vt[:2].T  # D = 200 / 100
    expected = X - X @ U @ U.T
    np.testing.assert_allclose(del_direction(torch.tensor(E, dtype=torch.float64).float()).numpy(), expected, atol=2e-4)
    Z = del_zscore(torch.tensor(E).float()).numpy()
    np.testing.assert_allclose(Z.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(Z.std(0, ddof=1), 1, atol=1e-4)


@pytest.mark.parametrize("method", ["deldirection", "del-zscore"])
def test_baseline_modes_change_the_whole_matrix(tiny_dir, tmp_path, method):
    out = tmp_path / method
    assert cli_main(["--checkpoint", str(tiny_dir / "bart" / "model.pt"), "--dict", str(tiny_dir / "bart" / "dict.txt"),
                     "--method", method, "--out", str(out)]) == 0
    new = load_state(out)["model"]["encoder.embed_tokens.weight"]
    old = load_state(tiny_dir / "bart")["model"]["encoder.embed_tokens.weight"]
    transform = del_direction if method == "deldirection" else del_zscore
    torch.testing.assert_close(new, transform(old))
    assert verify(out, tiny_dir / "bart")[0]


def test_bad_inputs_leave_nothing_behind(tiny_dir, inputs, capsys):
    tmp, d = inputs
    out = tmp / "out"
    # the wrong dictionary (another order: same size, other hash)
    other = write_dict(tmp / "other_dict.txt", list(reversed(TINY_WORDS)))
    assert cli_main(surgery_args(tiny_dir, "roberta", tmp, "--out", str(out))[:2] + ["--dict", str(other)]
                    + surgery_args(tiny_dir, "roberta", tmp, "--out", str(out))[4:]) == 2
    assert "differs from" in capsys.readouterr().err
    # the wrong dimension
    p = PredictedEmbeddings.load(tmp / "defemb.pt")
    p.embeddings, p.embedding_dim = torch.zeros(len(p.token_ids), 16), 16
    p.save(tmp / "small.pt")
    args = surgery_args(tiny_dir, "roberta", tmp, "--out", str(out))
    args[args.index("--embeddings") + 1] = str(tmp / "small.pt")
    assert cli_main(args) == 2 and "16-dimensional" in capsys.readouterr().err
    # a missing file
    assert cli_main(["--checkpoint", str(tmp / "nope.pt"), "--dict", str(tiny_dir / "roberta" / "dict.txt"),
                     "--method", "deldirection", "--out", str(out)]) == 2
    assert "nope.pt: checkpoint not found" in capsys.readouterr().err
    # alpha outside 0..100
    assert cli_main(surgery_args(tiny_dir, "roberta", tmp, "--alpha", "120", "--out", str(out))) == 2
    assert "--alpha 120" in capsys.readouterr().err
    assert not out.exists() and not list(tmp.glob(".out*"))


@pytest.mark.slow
def test_surgered_bart_fine_tunes_and_generates_with_stock_fairseq(tiny_dir, inputs):
    """The BART summarization recipe: fairseq-preprocess with the model's dict, fine-tune
    with --task translation from the surgered checkpoint, generate one line per input."""
    tmp, _ = inputs
    assert cli_main(surgery_args(tiny_dir, "bart", tmp, "--out", str(tmp / "bart.defemb"))) == 0
    raw = tmp / "raw"
    raw.mkdir()
    src = ["the cat is a small animal", "quagga and okapi are animals", "the sun is a star", "an owl is a bird",
           "the emu is a large bird", "a gnu is a large animal", "the river has water"]
    for split, lines in (("train", src), ("valid", src[:3]), ("test", src[3:])):
        (raw / f"{split}.source").write_text("\n".join(lines) + "\n")
        (raw / f"{split}.target").write_text("\n".join(" ".join(line.split()[:3]) for line in lines) + "\n")
    dict_txt = tiny_dir / "bart" / "dict.txt"
    bin_dir = tmp / "bin"
    subprocess.run([str(VENV_BIN / "fairseq-preprocess"), "--source-lang", "source", "--target-lang", "target",
                    "--trainpref", str(raw / "train"), "--validpref", str(raw / "valid"), "--testpref", str(raw / "test"),
                    "--destdir", str(bin_dir), "--srcdict", str(dict_txt), "--tgtdict", str(dict_txt), "--workers", "1"],
                   check=True, capture_output=True)
    dims = ["--encoder-layers", "2", "--decoder-layers", "2", "--encoder-embed-dim", "32", "--decoder-embed-dim", "32",
            "--encoder-ffn-embed-dim", "64", "--decoder-ffn-embed-dim", "64", "--encoder-attention-heads", "2",
            "--decoder-attention-heads", "2", "--max-source-positions", "64", "--max-target-positions", "64"]
    save = tmp / "ft"
    train = subprocess.run([
        str(VENV_BIN / "fairseq-train"), str(bin_dir), "--user-dir", str(REPO / "fairseq_defemb"),
        "--restore-file", str(tmp / "bart.defemb" / "model.pt"), "--reset-optimizer", "--reset-dataloader",
        "--reset-meters", "--task", "translation", "--source-lang", "source", "--target-lang", "target",
        "--truncate-source", "--layernorm-embedding", "--share-all-embeddings", "--share-decoder-input-output-embed",
        "--arch", "bart_base", *dims, "--criterion", "label_smoothed_cross_entropy", "--label-smoothing", "0.1",
        "--optimizer", "adam", "--lr", "1e-3", "--max-tokens", "256", "--max-update", "4", "--cpu",
        "--save-dir", str(save), "--num-workers", "0", "--required-batch-size-multiple", "1",
        "--skip-invalid-size-inputs-valid-test", "--no-epoch-checkpoints",
    ], capture_output=True, text=True)
    assert train.returncode == 0, train.stderr[-3000:]
    assert "Loaded checkpoint" in train.stdout + train.stderr
    gen = subprocess.run([
        str(VENV_BIN / "fairseq-generate"), str(bin_dir), "--user-dir", str(REPO / "fairseq_defemb"),
        "--path", str(save / "checkpoint_last.pt"), "--task", "translation", "--source-lang", "source",
        "--target-lang", "target", "--gen-subset", "test", "--beam", "2", "--max-len-b", "10", "--cpu",
        "--batch-size", "3", "--required-batch-size-multiple", "1", "--num-workers", "0",
    ], capture_output=True, text=True)
    assert gen.returncode == 0, gen.stderr[-3000:]
    hypotheses = [line for line in gen.stdout.splitlines() if line.startswith("H-")]
    assert len(hypotheses) == len(src[3:])


def test_task_ids_from_raw_text_with_gpt2_bpe(tmp_path):
    from fairseq_defemb.selection import task_token_ids

    gpt2 = REPO / ".cache" / "gpt2"
    n = len(json.loads((gpt2 / "encoder.json").read_text()))
    (tmp_path / "dict.txt").write_text("".join(f"{i} {n - i}\n" for i in range(n)))
    d = load_model_dictionary(tmp_path / "dict.txt")
    (tmp_path / "task.txt").write_text("The sediment settled.\n")
    ids = task_token_ids(tmp_path / "task.txt", d, tmp_path / "dict.txt", str(gpt2 / "encoder.json"), str(gpt2 / "vocab.bpe"))
    from fairseq.data.encoders.gpt2_bpe_utils import get_encoder

    expected = {d.index(str(t)) for t in get_encoder(str(gpt2 / "encoder.json"), str(gpt2 / "vocab.bpe")).encode("The sediment settled.")}
    assert ids == expected
    with pytest.raises(ValueError, match="raw text needs --gpt2-encoder-json"):
        task_token_ids(tmp_path / "task.txt", d, tmp_path / "dict.txt")

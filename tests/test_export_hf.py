"""defemb-export-hf: fairseq BART/RoBERTa checkpoints (stock-built, surgered, fp16) -> transformers,
verified against fairseq; bad input."""
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from fairseq_defemb.cli.export_hf import main as export_main
from fairseq_defemb.cli.surgery import main as surgery_main
from fairseq_defemb.data.vocabulary import load_model_dictionary
from tiny_hf import tiny_bpe, write_tiny_gpt2_dict, write_tiny_gpt2_files
from tiny_models import make_tiny_checkpoint


@pytest.fixture(scope="module")
def gpt2_files(tmp_path_factory):
    return write_tiny_gpt2_files(tmp_path_factory.mktemp("bpe"))


@pytest.fixture(scope="module")
def tiny_fairseq(tmp_path_factory):
    """Tiny fairseq BART and RoBERTa (tests/tiny_models.py) over the tiny BPE's dict.txt."""
    root = tmp_path_factory.mktemp("fairseq")
    dict_txt = write_tiny_gpt2_dict(root / "dict.txt")
    for family in ("bart", "roberta"):
        make_tiny_checkpoint(root / family, family, dict_path=dict_txt, seed=5)
    return root


def bpe_args(gpt2_files):
    return ["--gpt2-encoder-json", str(gpt2_files[0]), "--gpt2-vocab-bpe", str(gpt2_files[1])]


def test_surgered_tiny_bart_exports_and_generates_in_transformers(tiny_fairseq, gpt2_files, tmp_path, capsys):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    surgered = tmp_path / "deldir"
    assert surgery_main(["--checkpoint", str(tiny_fairseq / "bart"), "--method", "deldirection",
                         "--out", str(surgered)]) == 0
    out = tmp_path / "hf"
    assert export_main(["--checkpoint", str(surgered), "--out", str(out), "--verify", *bpe_args(gpt2_files)]) == 0
    assert "generation identical: greedy 5/5, beam 4 5/5" in capsys.readouterr().out
    report = json.loads((out / "export.json").read_text())
    v = report["verify"]
    assert v["passed"] and v["token_mismatches"] == [] and max(v["max_abs_encoder"], v["max_abs_hidden"]) < 1e-4
    assert v["max_abs_logits"] < 1e-4 and v["largest_hidden_value"] > 1
    model = AutoModelForSeq2SeqLM.from_pretrained(str(out), local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(str(out), local_files_only=True)
    # Tied, the surgered rows at their fairseq ids (madeupword filler and <mask> too), zero bias.
    fairseq_state = torch.load(surgered / "model.pt", map_location="cpu", weights_only=False)["model"]
    shared = model.model.shared.weight
    assert model.lm_head.weight.data_ptr() == shared.data_ptr() == model.model.encoder.embed_tokens.weight.data_ptr()
    assert torch.equal(shared, fairseq_state["encoder.embed_tokens.weight"])
    assert not model.final_logits_bias.any()
    dictionary = load_model_dictionary(surgered / "dict.txt")
    vocab, _ = tiny_bpe()
    assert tokenizer.mask_token_id == dictionary.index("<mask>") == len(dictionary) - 1
    assert tokenizer.convert_tokens_to_ids("madeupword0000") == dictionary.index("madeupword0000")
    assert json.loads((out / "vocab.json").read_text(encoding="utf-8")) == vocab
    assert model.config.max_position_embeddings == 64 and not model.config.scale_embedding
    ids = tokenizer(" The quagga settled.", return_tensors="pt")["input_ids"]
    generated = model.generate(ids, num_beams=4, max_new_tokens=8)
    assert generated.shape[0] == 1 and 2 < generated.shape[1] <= 10


def test_roberta_exports_with_files_beside_the_checkpoint(tiny_fairseq, gpt2_files, tmp_path):
    from transformers import AutoModelForMaskedLM

    ckpt = tmp_path / "roberta"
    shutil.copytree(tiny_fairseq / "roberta", ckpt)
    for path in gpt2_files:
        shutil.copy(path, ckpt / path.name)
    out = tmp_path / "hf"
    assert export_main(["--checkpoint", str(ckpt), "--out", str(out), "--verify"]) == 0
    v = json.loads((out / "export.json").read_text())["verify"]
    assert v["passed"] and v["max_abs_hidden"] < 1e-4 and v["max_abs_logits"] < 1e-4
    model = AutoModelForMaskedLM.from_pretrained(str(out), local_files_only=True)
    assert model.lm_head.decoder.weight.data_ptr() == model.roberta.embeddings.word_embeddings.weight.data_ptr()
    assert model.config.max_position_embeddings == 66 and model.config.layer_norm_eps == 1e-5


def test_fp16_checkpoint_exports_fp16_bits(tiny_fairseq, gpt2_files, tmp_path):
    state = torch.load(tiny_fairseq / "bart" / "model.pt", map_location="cpu", weights_only=False)
    state["model"] = {k: v.half() if v.is_floating_point() else v for k, v in state["model"].items()}
    half = tmp_path / "half"
    half.mkdir()
    torch.save(state, half / "model.pt")
    shutil.copy(tiny_fairseq / "bart" / "dict.txt", half / "dict.txt")
    out = tmp_path / "hf"
    assert export_main(["--checkpoint", str(half), "--out", str(out), "--verify", *bpe_args(gpt2_files)]) == 0
    weights = load_file(str(out / "model.safetensors"))
    assert all(v.dtype == torch.float16 for v in weights.values())
    assert torch.equal(weights["model.shared.weight"], state["model"]["encoder.embed_tokens.weight"])
    assert torch.equal(weights["model.decoder.layers.1.fc2.weight"], state["model"]["decoder.layers.1.fc2.weight"])
    assert json.loads((out / "export.json").read_text())["verify"]["passed"]


def test_verification_catches_a_wrong_weight(tiny_fairseq, gpt2_files, tmp_path):
    """compare() itself: a transformers model with one LayerNorm bias moved by 1e-3 fails."""
    from fairseq.data.encoders.gpt2_bpe_utils import get_encoder
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from fairseq_defemb.convert.export_hf import load_fairseq
    from fairseq_defemb.convert.verify_hf import VERIFY_SENTENCES, compare, gpt2_fairseq_ids

    out = tmp_path / "hf"
    assert export_main(["--checkpoint", str(tiny_fairseq / "bart"), "--out", str(out), *bpe_args(gpt2_files)]) == 0
    model, task, _, _ = load_fairseq(tiny_fairseq / "bart" / "model.pt")
    hf_model = AutoModelForSeq2SeqLM.from_pretrained(str(out), local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(str(out), local_files_only=True)
    encode = gpt2_fairseq_ids(task.source_dictionary, get_encoder(*map(str, gpt2_files)))
    run = lambda: compare(family="bart", fairseq_model=model, encode=encode, hf_model=hf_model,  # noqa: E731
                          tokenizer=tokenizer, sentences=VERIFY_SENTENCES[:2], generate_tokens=8)
    assert run().passed
    with torch.no_grad():
        hf_model.model.decoder.layers[1].final_layer_norm.bias[0] += 1e-3
    result = run()
    assert not result.passed and 5e-4 < result.max_abs_hidden < 1e-2 and result.max_abs_encoder == 0


def test_failed_verification_writes_nothing(tiny_fairseq, gpt2_files, tmp_path, monkeypatch, capsys):
    from fairseq_defemb.convert import verify_hf

    real = verify_hf.compare

    def one_token_off(**kwargs):
        result = real(**kwargs)
        result.token_mismatches.append("simulated")
        return result

    monkeypatch.setattr(verify_hf, "compare", one_token_off)
    out = tmp_path / "hf"
    assert export_main(["--checkpoint", str(tiny_fairseq / "bart"), "--out", str(out), "--verify",
                        *bpe_args(gpt2_files)]) == 1
    assert "--verify failed, nothing written" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_bad_inputs_name_the_file_and_write_nothing(tiny_fairseq, gpt2_files, tmp_path, capsys):
    out = tmp_path / "out"

    def fails(checkpoint, expected, *extra):
        assert export_main(["--checkpoint", str(checkpoint), "--out", str(out), *extra]) == 2
        err = capsys.readouterr().err
        assert expected in err, err

    empty = tmp_path / "empty"
    empty.mkdir()
    fails(empty, f"{empty / 'model.pt'}: missing; --checkpoint must be a fairseq checkpoint directory")
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    shutil.copy(tiny_fairseq / "bart" / "model.pt", ckpt / "model.pt")
    fails(ckpt, f"{ckpt / 'dict.txt'}: missing; put the model's dict.txt beside model.pt")
    shutil.copy(tiny_fairseq / "bart" / "dict.txt", ckpt / "dict.txt")
    fails(ckpt, f"{ckpt / 'encoder.json'}: missing; dict.txt holds GPT-2 BPE ids, so pass --gpt2-encoder-json")
    # A dict.txt that does not fit the BPE files: an id encoder.json does not have.
    lines = (ckpt / "dict.txt").read_text().splitlines()
    (ckpt / "dict.txt").write_text("\n".join(lines[:6] + [f"99999 {lines[6].split()[1]}"] + lines[7:]) + "\n")
    fails(ckpt, f"{ckpt / 'dict.txt'}:7: symbol '99999' is not an id of {gpt2_files[0]}", *bpe_args(gpt2_files))
    # An architecture that is neither BART nor RoBERTa.
    from fairseq_defemb.convert.fairseq_checkpoint import build_pretraining_model, save_model_checkpoint

    lm = tmp_path / "lm"
    lm.mkdir()
    shutil.copy(tiny_fairseq / "dict.txt", lm / "dict.txt")
    _, model, cfg = build_pretraining_model(lm, "language_modeling", "transformer_lm", [
        "--decoder-layers", "1", "--decoder-embed-dim", "16", "--decoder-ffn-embed-dim", "32",
        "--decoder-attention-heads", "2", "--tokens-per-sample", "16"])
    save_model_checkpoint(model, cfg, lm / "model.pt")
    fails(lm, f"{lm / 'model.pt'}: architecture TransformerLanguageModel", *bpe_args(gpt2_files))
    assert not out.exists() and not list(tmp_path.glob(".out*"))
    out.mkdir()
    (out / "keep").write_text("x")
    fails(tiny_fairseq / "bart", f"{out}: output directory exists", *bpe_args(gpt2_files))
    assert [p.name for p in out.iterdir()] == ["keep"]


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        export_main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--checkpoint" in text and "--verify" in text and "BertForMaskedLM" in text


@pytest.mark.slow
def test_demo_minilm_deldirection_round_trips_to_bert(tmp_path, capsys):
    """The demo's surgered MiniLM, built the same way (defemb-convert-hf on all-MiniLM-L6-v2, then
    defemb-surgery --method deldirection), exports to BertForMaskedLM + BertTokenizer and matches
    fairseq: WordPiece ids identical, hidden states and logits within 1e-4."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer, BertForMaskedLM

    from fairseq_defemb.cli.convert_hf import main as convert_main
    from test_convert_hf import MINILM

    assert convert_main(["--model-dir", str(MINILM), "--out", str(tmp_path / "fs")]) == 0
    assert surgery_main(["--checkpoint", str(tmp_path / "fs"), "--method", "deldirection", "--no-isotropy",
                         "--out", str(tmp_path / "deldir")]) == 0
    out = tmp_path / "hf"
    assert export_main(["--checkpoint", str(tmp_path / "deldir"), "--out", str(out), "--verify"]) == 0
    report = json.loads((out / "export.json").read_text())
    v = report["verify"]
    assert report["tokenizer"] == "wordpiece" and report["lowercase"] is True
    assert v["passed"] and v["token_mismatches"] == [] and v["sentences"] == 5
    assert v["max_abs_hidden"] < 1e-4 and v["max_abs_logits"] < 1e-4 and v["largest_hidden_value"] > 1
    model = AutoModelForMaskedLM.from_pretrained(str(out), local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(str(out), local_files_only=True)
    assert isinstance(model, BertForMaskedLM) and model.config.layer_norm_eps == 1e-5
    surgered = torch.load(tmp_path / "deldir" / "model.pt", map_location="cpu", weights_only=False)["model"]
    assert torch.equal(model.bert.embeddings.word_embeddings.weight,
                       surgered["encoder.sentence_encoder.embed_tokens.weight"])
    assert tokenizer.convert_ids_to_tokens(tokenizer("the sediment")["input_ids"]) == ["[CLS]", "the", "sediment", "[SEP]"]


def test_real_gpt2_bpe_tokenizes_like_fairseq(tmp_path):
    """GPT-2's own encoder.json/vocab.bpe (fetched by make install) under a roberta.base-shaped
    dictionary (50,257 ids in id order + 3 madeupword fillers + <mask> = 50,265 rows): the exported
    tokenizer gives fairseq's ids on every line of the README and docs/, on the verify sentences and on
    awkward strings; the model matches fairseq."""
    from transformers import AutoTokenizer

    from conftest import REPO
    from fairseq_defemb.convert.export_hf import load_fairseq
    from fairseq_defemb.convert.verify_hf import gpt2_fairseq_ids

    gpt2 = REPO / ".cache" / "gpt2"
    assert (gpt2 / "encoder.json").is_file(), "run `make install`: it fetches GPT-2's BPE files to .cache/gpt2/"
    ckpt = tmp_path / "roberta"
    ckpt.mkdir()
    n = len(json.loads((gpt2 / "encoder.json").read_text(encoding="utf-8")))
    symbols = [str(i) for i in range(n)] + [f"madeupword{k:04d}" for k in range(3)]
    (ckpt / "dict.txt").write_text("".join(f"{s} {len(symbols) - k}\n" for k, s in enumerate(symbols)))
    make_tiny_checkpoint(ckpt, "roberta", dict_path=ckpt / "dict.txt")
    out = tmp_path / "hf"
    assert export_main(["--checkpoint", str(ckpt), "--out", str(out), "--verify", "--gpt2-encoder-json",
                        str(gpt2 / "encoder.json"), "--gpt2-vocab-bpe", str(gpt2 / "vocab.bpe")]) == 0
    report = json.loads((out / "export.json").read_text())
    assert report["vocabulary"] == 50265 and report["bpe_tokens_outside_dict"] == 0 and report["verify"]["passed"]
    assert report["fillers"] == ["madeupword0000", "madeupword0001", "madeupword0002"] and report["mask_id"] == 50264
    tokenizer = AutoTokenizer.from_pretrained(str(out), local_files_only=True)
    from fairseq.data.encoders.gpt2_bpe_utils import get_encoder

    _, task, _, _ = load_fairseq(ckpt / "model.pt")
    encode = gpt2_fairseq_ids(task.source_dictionary, get_encoder(str(gpt2 / "encoder.json"), str(gpt2 / "vocab.bpe")))
    lines = [line for page in (REPO / "README.md", *sorted((REPO / "docs").glob("*.md")))
             for line in page.read_text(encoding="utf-8").splitlines()]
    lines += ["", " ", "   leading", "trailing   ", "tab\there", "new\nline", "1,234,567.89", "don't we'll I'm",
              "emoji 🙂 and 🇫🇷", "ümlaut ßharp ﬁ ligature", "Ελληνικά русский 日本語 한국어", "\u00a0nbsp", "<|endoftext|>"]
    assert len(lines) > 400
    specials = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
    # transformers reads special-token strings in the text as the specials; fairseq's hub encode
    # BPE-encodes their characters. split_special_tokens=True makes transformers do the same.
    mismatched = [line for line in lines if encode(line) != tokenizer(line)["input_ids"]]
    assert mismatched and all(any(s in line for s in specials) for line in mismatched)
    assert [line for line in lines if encode(line) != tokenizer(line, split_special_tokens=True)["input_ids"]] == []


@pytest.mark.slow
def test_exported_surgered_bart_fine_tunes_with_seq2seq_trainer(tiny_fairseq, gpt2_files, tmp_path):
    """The transformers recipe's last step (docs/hugging-face.md) on the tiny model: Seq2SeqTrainer fine-tunes the
    exported surgered BART (3 updates), the embeddings stay tied, and the result generates."""
    from transformers import (
        AutoModelForSeq2SeqLM, AutoTokenizer, DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments,
    )

    assert surgery_main(["--checkpoint", str(tiny_fairseq / "bart"), "--method", "deldirection", "--no-isotropy",
                         "--out", str(tmp_path / "deldir")]) == 0
    hf_dir = tmp_path / "hf"
    assert export_main(["--checkpoint", str(tmp_path / "deldir"), "--out", str(hf_dir), *bpe_args(gpt2_files)]) == 0
    tokenizer = AutoTokenizer.from_pretrained(str(hf_dir), local_files_only=True)
    model = AutoModelForSeq2SeqLM.from_pretrained(str(hf_dir), local_files_only=True)
    before = model.model.shared.weight.detach().clone()
    pairs = [("The sediment settled at the bottom of the river.", "sediment settled"),
             ("A quagga, last seen in 1883, stood tall!", "quagga"), ("Hello world 42", "Hello")]
    features = [dict(tokenizer(src), labels=tokenizer(text_target=tgt)["input_ids"]) for src, tgt in pairs]
    args = Seq2SeqTrainingArguments(output_dir=str(tmp_path / "ft"), per_device_train_batch_size=3, max_steps=3,
                                    learning_rate=1e-3, report_to=[], save_strategy="no", use_cpu=True,
                                    logging_steps=1, seed=1)
    trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=features,
                             data_collator=DataCollatorForSeq2Seq(tokenizer, model=model))
    result = trainer.train()
    assert result.global_step == 3 and torch.isfinite(torch.tensor(result.training_loss))
    shared = model.model.shared.weight
    assert model.lm_head.weight.data_ptr() == shared.data_ptr() and not torch.equal(shared.detach(), before)
    trainer.save_model(str(tmp_path / "tuned"))
    tuned = AutoModelForSeq2SeqLM.from_pretrained(str(tmp_path / "tuned"), local_files_only=True)
    out = tuned.generate(**tokenizer(["The river settled."], return_tensors="pt"), num_beams=4, max_new_tokens=6)
    assert out.shape[0] == 1 and out.shape[1] > 2

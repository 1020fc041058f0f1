"""defemb-convert-hf on transformers BART and RoBERTa, and HF -> fairseq -> HF.

Tiny random models built with transformers' own config classes and a tiny byte-level BPE
(tests/tiny_hf.py); nothing is downloaded."""
import json

import pytest
import torch
from safetensors.torch import load_file

from fairseq_defemb.cli.convert_hf import main as convert_main
from fairseq_defemb.cli.export_hf import main as export_main
from fairseq_defemb.data.vocabulary import load_model_dictionary
from tiny_hf import save_tiny_hf, tiny_bpe

FAMILIES = ["bart", "roberta"]
SENTENCE = " A quagga, last seen in 1883, stood tall! café"


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {family: save_tiny_hf(root / family, family) for family in FAMILIES}


@pytest.fixture(scope="module")
def converted(hf_dirs, tmp_path_factory):
    root = tmp_path_factory.mktemp("fairseq")
    for family in FAMILIES:
        assert convert_main(["--model-dir", str(hf_dirs[family]), "--out", str(root / family), "--verify"]) == 0
    return {family: root / family for family in FAMILIES}


@pytest.mark.parametrize("family", FAMILIES)
def test_convert_verify_matches_transformers(converted, family):
    report = json.loads((converted[family] / "conversion.json").read_text())
    v = report["verify"]
    # Five sentences with leading/trailing spaces, punctuation, digits, accents and CJK.
    assert v["passed"] and v["sentences"] == 5 and v["token_mismatches"] == []
    assert v["largest_hidden_value"] > 1  # the differences below are not small because the states are
    assert v["max_abs_hidden"] < 1e-4 and v["max_abs_logits"] < 1e-4
    if family == "bart":
        assert v["max_abs_encoder"] < 1e-4 and v["greedy_identical"] == v["beam4_identical"] == 5
    assert sorted(p.name for p in converted[family].iterdir()) == [
        "conversion.json", "dict.txt", "encoder.json", "model.pt", "vocab.bpe"]


@pytest.mark.parametrize("family", FAMILIES)
def test_dictionary_is_hf_order_and_tensors_are_bitwise(hf_dirs, converted, family):
    vocab, _ = tiny_bpe()
    dictionary = load_model_dictionary(converted[family] / "dict.txt")
    encoder = json.loads((converted[family] / "encoder.json").read_text(encoding="utf-8"))
    assert len(dictionary) == len(vocab)
    for token, hf_id in vocab.items():  # HF id k = fairseq id k; filler and specials literal
        assert dictionary[hf_id] == (str(hf_id) if token in encoder else token)
        assert encoder.get(token, hf_id) == hf_id
    assert dictionary.index("madeupword0000") == vocab["madeupword0000"] and dictionary[len(vocab) - 1] == "<mask>"
    hf = load_file(str(hf_dirs[family] / "model.safetensors"))
    state = torch.load(converted[family] / "model.pt", map_location="cpu", weights_only=False)["model"]
    if family == "bart":
        pairs = {"encoder.embed_tokens.weight": "model.shared.weight",
                 "decoder.output_projection.weight": "model.shared.weight",
                 "encoder.embed_positions.weight": "model.encoder.embed_positions.weight",
                 "decoder.layers.1.encoder_attn.k_proj.weight": "model.decoder.layers.1.encoder_attn.k_proj.weight",
                 "decoder.layernorm_embedding.bias": "model.decoder.layernorm_embedding.bias"}
    else:
        pairs = {"encoder.sentence_encoder.embed_tokens.weight": "roberta.embeddings.word_embeddings.weight",
                 "encoder.lm_head.weight": "roberta.embeddings.word_embeddings.weight",
                 "encoder.sentence_encoder.embed_positions.weight": "roberta.embeddings.position_embeddings.weight",
                 "encoder.sentence_encoder.layers.1.self_attn.q_proj.weight":
                     "roberta.encoder.layer.1.attention.self.query.weight",
                 "encoder.lm_head.layer_norm.weight": "lm_head.layer_norm.weight", "encoder.lm_head.bias": "lm_head.bias"}
    for ours, theirs in pairs.items():
        assert state[ours].dtype == hf[theirs].dtype and torch.equal(state[ours], hf[theirs]), ours


@pytest.mark.parametrize("family", FAMILIES)
def test_fairseq_hub_loads_the_output_and_tokenizes_like_transformers(hf_dirs, converted, family):
    """RoBERTa takes the GPT-2 file paths in from_pretrained. BART cannot: fairseq's override of
    ``bpe`` also hits the denoising task's own string field ``bpe`` in a cfg-format checkpoint (any
    BART fairseq-train wrote since 0.10), so it loads with bpe=None and gets its encoder after."""
    from argparse import Namespace

    from transformers import AutoTokenizer

    from fairseq.data import encoders
    from fairseq.models.bart import BARTModel
    from fairseq.models.roberta import RobertaModel

    out = converted[family]
    files = {"gpt2_encoder_json": str(out / "encoder.json"), "gpt2_vocab_bpe": str(out / "vocab.bpe")}
    if family == "bart":
        hub = BARTModel.from_pretrained(str(out), checkpoint_file="model.pt", bpe=None)
        hub.bpe = encoders.build_bpe(Namespace(bpe="gpt2", **files))
    else:
        hub = RobertaModel.from_pretrained(str(out), checkpoint_file="model.pt", **files)
    tokenizer = AutoTokenizer.from_pretrained(str(hf_dirs[family]), local_files_only=True)
    assert hub.encode(SENTENCE).tolist() == tokenizer(SENTENCE)["input_ids"]
    assert hub.decode(hub.encode(SENTENCE)) == SENTENCE


@pytest.mark.parametrize("family", FAMILIES)
def test_hf_fairseq_hf_is_bitwise(hf_dirs, converted, family, tmp_path):
    back = tmp_path / "back"
    assert export_main(["--checkpoint", str(converted[family]), "--out", str(back), "--verify"]) == 0
    before, after = load_file(str(hf_dirs[family] / "model.safetensors")), load_file(str(back / "model.safetensors"))
    assert before.keys() == after.keys()
    for key, value in before.items():
        assert after[key].dtype == value.dtype and after[key].numpy().tobytes() == value.numpy().tobytes(), key
    old_tok = json.loads((hf_dirs[family] / "tokenizer.json").read_text(encoding="utf-8"))["model"]
    new_tok = json.loads((back / "tokenizer.json").read_text(encoding="utf-8"))["model"]
    assert new_tok["vocab"] == old_tok["vocab"] and new_tok["merges"] == old_tok["merges"]
    assert json.loads((back / "vocab.json").read_text(encoding="utf-8")) == old_tok["vocab"]
    old_cfg, new_cfg = (json.loads((d / "config.json").read_text()) for d in (hf_dirs[family], back))
    differing = {k for k in old_cfg.keys() | new_cfg.keys() if old_cfg.get(k) != new_cfg.get(k)}
    assert differing <= {"mask_token_id", "transformers_version"}, differing


def test_roberta_without_head_and_with_a_token_type_embedding(tmp_path, capsys):
    """RobertaModel: the pooler is dropped, fairseq gets the identity LM head, the non-zero
    token-type row is folded into the positions; hidden states still match."""
    src = save_tiny_hf(tmp_path / "hf", "roberta", head=False, seed=3, token_type=True)
    assert convert_main(["--model-dir", str(src), "--out", str(tmp_path / "fs"), "--verify"]) == 0
    assert "verify: passed" in capsys.readouterr().out
    report = json.loads((tmp_path / "fs" / "conversion.json").read_text())
    assert report["token_type_folded"] and report["lm_head"].startswith("initialized")
    assert report["dropped"] == ["pooler.dense"] and report["verify"]["max_abs_logits"] is None
    assert report["verify"]["max_abs_hidden"] < 1e-4


def test_bart_model_without_lm_head(tmp_path):
    src = save_tiny_hf(tmp_path / "hf", "bart", head=False, seed=4)
    assert convert_main(["--model-dir", str(src), "--out", str(tmp_path / "fs"), "--verify"]) == 0
    v = json.loads((tmp_path / "fs" / "conversion.json").read_text())["verify"]
    assert v["passed"] and v["beam4_identical"] == 5


def test_bad_hf_inputs_name_the_file_and_write_nothing(hf_dirs, tmp_path, capsys):
    out = tmp_path / "out"

    def fails(model_dir, expected):
        assert convert_main(["--model-dir", str(model_dir), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert expected in err, err

    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (bad / name).write_bytes((hf_dirs["bart"] / name).read_bytes())
    fails(bad, f"{bad / 'model.safetensors'}: missing; --model-dir must hold config.json, model.safetensors")
    (bad / "pytorch_model.bin").write_bytes(b"")
    fails(bad, "only pytorch_model.bin is there")
    config = json.loads((hf_dirs["bart"] / "config.json").read_text())
    (bad / "model.safetensors").write_bytes((hf_dirs["bart"] / "model.safetensors").read_bytes())
    (bad / "config.json").write_text(json.dumps({**config, "model_type": "mbart"}))
    fails(bad, f"{bad / 'config.json'}: model_type 'mbart'; defemb-convert-hf converts bert, roberta and bart")
    (bad / "config.json").write_text(json.dumps({**config, "scale_embedding": True}))
    fails(bad, f"{bad / 'config.json'}: scale_embedding true")
    (bad / "config.json").write_text(json.dumps(config))
    vocab, merges = tiny_bpe()
    swapped = {**vocab, "<mask>": 5, vocab_token(vocab, 5): vocab["<mask>"]}
    (bad / "vocab.json").write_text(json.dumps(swapped, ensure_ascii=False), encoding="utf-8")
    (bad / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    fails(bad, f"{bad / 'vocab.json'}: <mask> has id 5")
    (bad / "vocab.json").write_text(json.dumps({k: v for k, v in vocab.items() if v != 4}), encoding="utf-8")
    fails(bad, f"{bad / 'vocab.json'}: ids are not 0..")
    (bad / "vocab.json").unlink()
    (bad / "tokenizer.json").unlink()
    fails(bad, "no tokenizer: needs vocab.json + merges.txt or tokenizer.json")
    (bad / "tokenizer.json").write_bytes((hf_dirs["bart"] / "tokenizer.json").read_bytes())
    from safetensors.torch import save_file

    weights = load_file(str(hf_dirs["bart"] / "model.safetensors"))
    weights["final_logits_bias"] = torch.ones_like(weights["final_logits_bias"])
    save_file(weights, str(bad / "model.safetensors"))
    fails(bad, f"{bad / 'model.safetensors'}: final_logits_bias has")
    assert not out.exists() and not list(tmp_path.glob(".out*"))
    out.mkdir()
    fails(hf_dirs["bart"], f"{out}: output directory exists")
    assert list(out.iterdir()) == []


def vocab_token(vocab: dict[str, int], index: int) -> str:
    return next(t for t, i in vocab.items() if i == index)


@pytest.mark.slow
def test_converted_bart_fine_tunes_with_fairseq_train_restore_file(converted, tmp_path):
    """fairseq's BART summarization recipe on the converted directory: its encoder.json/vocab.bpe
    BPE-encode the text, fairseq-preprocess takes its dict.txt, fairseq-train --restore-file model.pt
    (strict load; translation drops the <mask> row as for bart.large) and fairseq-generate run."""
    import subprocess

    from fairseq.data.encoders.gpt2_bpe_utils import get_encoder

    from conftest import REPO, VENV_BIN

    out = converted["bart"]
    bpe = get_encoder(str(out / "encoder.json"), str(out / "vocab.bpe"))
    lines = ["The sediment settled at the bottom of the river.", "A quagga, last seen in 1883.", "Hello world 42",
             "Definitions give rare tokens meaning.", "café, naïve, Zürich"]
    raw = tmp_path / "raw"
    raw.mkdir()
    for split in ("train", "valid", "test"):
        for side in ("source", "target"):
            text = lines if side == "source" else [line.split(",")[0] for line in lines]
            (raw / f"{split}.{side}").write_text("".join(" ".join(map(str, bpe.encode(t))) + "\n" for t in text))
    bin_dir = tmp_path / "bin"
    subprocess.run([str(VENV_BIN / "fairseq-preprocess"), "--source-lang", "source", "--target-lang", "target",
                    "--trainpref", str(raw / "train"), "--validpref", str(raw / "valid"), "--testpref", str(raw / "test"),
                    "--destdir", str(bin_dir), "--srcdict", str(out / "dict.txt"), "--tgtdict", str(out / "dict.txt"),
                    "--workers", "1"], check=True, capture_output=True)
    options = json.loads((out / "conversion.json").read_text())["options"]
    k = options.index("--tokens-per-sample")  # a denoising option; the dimensions are the rest
    options = options[:k] + options[k + 2:]
    save = tmp_path / "ft"
    train = subprocess.run([
        str(VENV_BIN / "fairseq-train"), str(bin_dir), "--user-dir", str(REPO / "fairseq_defemb"),
        "--restore-file", str(out / "model.pt"), "--reset-optimizer", "--reset-dataloader", "--reset-meters",
        "--task", "translation", "--source-lang", "source", "--target-lang", "target", "--truncate-source",
        "--layernorm-embedding", "--share-all-embeddings", "--share-decoder-input-output-embed",
        "--arch", "bart_large", *options, "--criterion", "label_smoothed_cross_entropy",
        "--label-smoothing", "0.1", "--optimizer", "adam", "--lr", "1e-4", "--max-tokens", "512", "--max-update", "2",
        "--cpu", "--save-dir", str(save), "--num-workers", "0", "--required-batch-size-multiple", "1",
        "--no-epoch-checkpoints",
    ], capture_output=True, text=True)
    assert train.returncode == 0, train.stderr[-3000:]
    assert "Loaded checkpoint" in train.stdout + train.stderr
    start = torch.load(out / "model.pt", map_location="cpu", weights_only=False)["model"]
    tuned = torch.load(save / "checkpoint_last.pt", map_location="cpu", weights_only=False)["model"]
    key = "decoder.layers.1.fc2.weight"
    assert 0 < (tuned[key] - start[key]).abs().max() < 1e-3  # 2 Adam steps at 1e-4 from the converted weights
    gen = subprocess.run([
        str(VENV_BIN / "fairseq-generate"), str(bin_dir), "--user-dir", str(REPO / "fairseq_defemb"),
        "--path", str(save / "checkpoint_last.pt"), "--task", "translation", "--source-lang", "source",
        "--target-lang", "target", "--gen-subset", "test", "--beam", "4", "--max-len-b", "8", "--cpu",
        "--batch-size", "5", "--required-batch-size-multiple", "1", "--num-workers", "0"],
        capture_output=True, text=True)
    assert gen.returncode == 0, gen.stderr[-3000:]
    assert len([line for line in gen.stdout.splitlines() if line.startswith("H-")]) == len(lines)


def test_uneven_bart_relu_round_trips(tmp_path):
    """Any size: 3 encoder and 1 decoder layers of different widths, relu, 3 heads."""
    src = save_tiny_hf(tmp_path / "hf", "bart", seed=6, d_model=24, encoder_layers=3, decoder_layers=1,
                       encoder_attention_heads=3, decoder_attention_heads=3, encoder_ffn_dim=20, decoder_ffn_dim=44,
                       activation_function="relu", max_position_embeddings=30)
    assert convert_main(["--model-dir", str(src), "--out", str(tmp_path / "fs"), "--verify"]) == 0
    report = json.loads((tmp_path / "fs" / "conversion.json").read_text())
    v = report["verify"]
    ran = v["sentences"] - len(v["too_long"])  # 30 positions: the long sentences cannot run
    assert v["passed"] and ran >= 3 and v["greedy_identical"] == v["beam4_identical"] == ran
    assert "relu" in report["options"]
    assert export_main(["--checkpoint", str(tmp_path / "fs"), "--out", str(tmp_path / "back")]) == 0
    before, after = (load_file(str(d / "model.safetensors")) for d in (src, tmp_path / "back"))
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    config = json.loads((tmp_path / "back" / "config.json").read_text())
    assert (config["encoder_layers"], config["decoder_layers"], config["encoder_ffn_dim"], config["decoder_ffn_dim"],
            config["activation_function"], config["max_position_embeddings"]) == (3, 1, 20, 44, "relu", 30)


@pytest.mark.slow
def test_bart_base_shaped_model_with_gpt2_bpe_round_trips(tmp_path):
    """A random model of bart-base's shape (6 + 6 layers, d_model 768, 12 heads, 1,024 positions,
    50,265 ids over GPT-2's real BPE, 139M parameters): in, verified, out, bitwise."""
    from conftest import REPO
    from tiny_hf import gpt2_hf_vocab

    gpt2 = REPO / ".cache" / "gpt2"
    assert (gpt2 / "encoder.json").is_file(), "run `make install`: it fetches GPT-2's BPE files to .cache/gpt2/"
    bpe = gpt2_hf_vocab(gpt2 / "encoder.json", gpt2 / "vocab.bpe")
    src = save_tiny_hf(tmp_path / "hf", "bart", bpe=bpe, spread=0.05, vocab_size=len(bpe[0]), d_model=768,
                       encoder_layers=6, decoder_layers=6, encoder_attention_heads=12, decoder_attention_heads=12,
                       encoder_ffn_dim=3072, decoder_ffn_dim=3072, max_position_embeddings=1024)
    assert convert_main(["--model-dir", str(src), "--out", str(tmp_path / "fs"), "--verify"]) == 0
    v = json.loads((tmp_path / "fs" / "conversion.json").read_text())["verify"]
    assert v["passed"] and v["greedy_identical"] == v["beam4_identical"] == 5, v
    # Bitwise equal to the verified source, so the export needs no second --verify (minutes at this size).
    assert export_main(["--checkpoint", str(tmp_path / "fs"), "--out", str(tmp_path / "back")]) == 0
    before, after = (load_file(str(d / "model.safetensors")) for d in (src, tmp_path / "back"))
    assert before.keys() == after.keys()
    assert all(before[k].numpy().tobytes() == after[k].numpy().tobytes() for k in before)


def test_failed_verification_writes_nothing(hf_dirs, tmp_path, monkeypatch, capsys):
    from fairseq_defemb.convert import verify_hf

    real = verify_hf.compare

    def logits_off(**kwargs):
        result = real(**kwargs)
        result.max_abs_logits = 1.0
        return result

    monkeypatch.setattr(verify_hf, "compare", logits_off)
    assert convert_main(["--model-dir", str(hf_dirs["roberta"]), "--out", str(tmp_path / "fs"), "--verify"]) == 1
    err = capsys.readouterr().err
    assert "verify: FAILED" in err and "--verify failed, nothing written" in err
    assert list(tmp_path.iterdir()) == []


def test_fp16_source_stays_fp16_both_ways(hf_dirs, tmp_path):
    import shutil

    from safetensors.torch import save_file

    src = tmp_path / "hf16"
    shutil.copytree(hf_dirs["bart"], src)
    weights = {k: v.half() for k, v in load_file(str(src / "model.safetensors")).items()}
    save_file(weights, str(src / "model.safetensors"), metadata={"format": "pt"})
    assert convert_main(["--model-dir", str(src), "--out", str(tmp_path / "fs"), "--verify"]) == 0
    state = torch.load(tmp_path / "fs" / "model.pt", map_location="cpu", weights_only=False)["model"]
    assert state["encoder.embed_tokens.weight"].dtype == torch.float16
    assert json.loads((tmp_path / "fs" / "conversion.json").read_text())["dtype"] == "float16"
    assert export_main(["--checkpoint", str(tmp_path / "fs"), "--out", str(tmp_path / "back")]) == 0
    after = load_file(str(tmp_path / "back" / "model.safetensors"))
    assert after.keys() == weights.keys()
    assert all(after[k].dtype == torch.float16 and torch.equal(after[k], weights[k]) for k in weights)

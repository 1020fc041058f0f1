"""``defemb-convert-hf``: a BERT-family model in Hugging Face layout -> a stock fairseq RoBERTa.

    defemb-convert-hf --model-dir DIR --out minilm-fairseq/

DIR holds ``config.json``, ``model.safetensors`` and ``vocab.txt``. The output directory
(``model.pt`` + ``dict.txt`` + ``conversion.json``) loads with
``RobertaModel.from_pretrained`` and ``fairseq-train --restore-file`` like ``roberta.base``.

* dict.txt: the WordPiece strings of vocab.txt in vocab.txt order, without BERT's
  specials, which map to fairseq's: [CLS] -> <s>, [PAD] -> <pad>, [SEP] -> </s>,
  [UNK] -> <unk>, [MASK] -> <mask> (appended last, as fairseq's masked_lm does). The
  count column is rank-derived (|vocab| - rank), not corpus counts: vocab.txt has none.
* Token-type embedding 0 (single-segment input) is folded into the position embeddings;
  HF position i is fairseq row i + 2 (fairseq offsets positions by padding_idx + 1).
* No MLM head in a sentence-transformers checkpoint: the LM head is identity dense, unit
  LayerNorm, zero bias, output weight tied to the embeddings (a BertForMaskedLM head
  ``cls.predictions.*`` is converted when present).
* LayerNorm epsilon: BERT uses 1e-12, fairseq's LayerNorm 1e-5 and does not expose it;
  ``--verify`` measures what that changes in the final hidden states.
"""
import argparse
import json
import sys
from pathlib import Path

import torch

from fairseq_defemb.atomic_io import atomic_output_dir
from fairseq_defemb.fairseq_checkpoint import build_pretraining_model, save_model_checkpoint

BERT_TO_FAIRSEQ_SPECIALS = {"[CLS]": "<s>", "[PAD]": "<pad>", "[SEP]": "</s>", "[UNK]": "<unk>", "[MASK]": "<mask>"}
FAIRSEQ_SYMBOLS = {"<s>", "<pad>", "</s>", "<unk>", "<mask>"}


class ConversionError(ValueError):
    """The input is not a BERT model this converter understands; the message says why."""


def read_hf_dir(model_dir: Path) -> tuple[dict, dict[str, torch.Tensor], list[str]]:
    from safetensors.torch import load_file

    for name in ("config.json", "model.safetensors", "vocab.txt"):
        if not (model_dir / name).is_file():
            raise ConversionError(f"{model_dir / name}: missing; --model-dir must hold config.json, model.safetensors, vocab.txt")
    config = json.loads((model_dir / "config.json").read_text())
    if config.get("model_type") != "bert":
        raise ConversionError(f"{model_dir / 'config.json'}: model_type {config.get('model_type')!r}; only BERT-family models convert")
    if config.get("position_embedding_type", "absolute") != "absolute" or config.get("hidden_act") not in ("gelu", "gelu_python"):
        raise ConversionError(f"{model_dir / 'config.json'}: needs absolute positions and gelu (fairseq RoBERTa's)")
    state = {k.removeprefix("bert."): v for k, v in load_file(str(model_dir / "model.safetensors")).items()}
    vocab = (model_dir / "vocab.txt").read_text(encoding="utf-8").split("\n")
    if vocab and vocab[-1] == "":
        vocab.pop()
    if len(vocab) != config["vocab_size"]:
        raise ConversionError(f"{model_dir / 'vocab.txt'}: {len(vocab)} lines but config.json says vocab_size {config['vocab_size']}")
    return config, state, vocab


def dictionary_lines(vocab: list[str], vocab_path: Path) -> list[str]:
    missing = [s for s in BERT_TO_FAIRSEQ_SPECIALS if s not in vocab]
    if missing:
        raise ConversionError(f"{vocab_path}: lacks {', '.join(missing)}; not a BERT WordPiece vocabulary")
    seen = set()
    lines = []
    for lineno, token in enumerate(vocab, 1):
        if token in BERT_TO_FAIRSEQ_SPECIALS:
            continue
        if not token or any(c.isspace() for c in token) or token in FAIRSEQ_SYMBOLS or token in seen:
            raise ConversionError(f"{vocab_path}:{lineno}: token {token!r} cannot be a fairseq dictionary symbol "
                                  "(empty, whitespace, duplicate or a fairseq special)")
        seen.add(token)
        lines.append(f"{token} {len(vocab) - lineno + 1}")
    return lines


def convert_state(config: dict, hf: dict[str, torch.Tensor], vocab: list[str], dictionary, fairseq_state: dict) -> dict:
    """Map every HF tensor onto the fairseq RoBERTa state dict (same keys as ``fairseq_state``)."""
    prefix = "encoder.sentence_encoder."
    out = {}
    order = torch.tensor([dictionary.index(BERT_TO_FAIRSEQ_SPECIALS.get(t, t)) for t in vocab])
    words = hf["embeddings.word_embeddings.weight"]
    embed = torch.zeros_like(fairseq_state[prefix + "embed_tokens.weight"])
    embed[order] = words
    out[prefix + "embed_tokens.weight"] = embed
    positions = fairseq_state[prefix + "embed_positions.weight"].clone().zero_()
    token_type = hf.get("embeddings.token_type_embeddings.weight")
    hf_pos = hf["embeddings.position_embeddings.weight"] + (token_type[0] if token_type is not None else 0)
    positions[2 : 2 + hf_pos.size(0)] = hf_pos
    out[prefix + "embed_positions.weight"] = positions
    out[prefix + "layernorm_embedding.weight"] = hf["embeddings.LayerNorm.weight"]
    out[prefix + "layernorm_embedding.bias"] = hf["embeddings.LayerNorm.bias"]
    names = {
        "self_attn.q_proj": "attention.self.query", "self_attn.k_proj": "attention.self.key",
        "self_attn.v_proj": "attention.self.value", "self_attn.out_proj": "attention.output.dense",
        "self_attn_layer_norm": "attention.output.LayerNorm", "fc1": "intermediate.dense",
        "fc2": "output.dense", "final_layer_norm": "output.LayerNorm",
    }
    for layer in range(config["num_hidden_layers"]):
        for ours, theirs in names.items():
            for param in ("weight", "bias"):
                out[f"{prefix}layers.{layer}.{ours}.{param}"] = hf[f"encoder.layer.{layer}.{theirs}.{param}"]
    dim = config["hidden_size"]
    if "cls.predictions.transform.dense.weight" in hf:
        out["encoder.lm_head.dense.weight"] = hf["cls.predictions.transform.dense.weight"]
        out["encoder.lm_head.dense.bias"] = hf["cls.predictions.transform.dense.bias"]
        out["encoder.lm_head.layer_norm.weight"] = hf["cls.predictions.transform.LayerNorm.weight"]
        out["encoder.lm_head.layer_norm.bias"] = hf["cls.predictions.transform.LayerNorm.bias"]
        bias = torch.zeros(embed.size(0))
        bias[order] = hf["cls.predictions.bias"]
        out["encoder.lm_head.bias"] = bias
    else:
        out["encoder.lm_head.dense.weight"] = torch.eye(dim)
        out["encoder.lm_head.dense.bias"] = torch.zeros(dim)
        out["encoder.lm_head.layer_norm.weight"] = torch.ones(dim)
        out["encoder.lm_head.layer_norm.bias"] = torch.zeros(dim)
        out["encoder.lm_head.bias"] = torch.zeros(embed.size(0))
    out["encoder.lm_head.weight"] = embed
    for key, value in fairseq_state.items():
        out.setdefault(key, value)  # version counters and the like
    return out


def convert(model_dir: str | Path, out: str | Path, overwrite: bool = False) -> dict:
    model_dir = Path(model_dir)
    config, hf, vocab = read_hf_dir(model_dir)
    lines = dictionary_lines(vocab, model_dir / "vocab.txt")
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        (tmp / "dict.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        task, model, cfg = build_pretraining_model(tmp, "masked_lm", "roberta_base", [
            "--encoder-layers", str(config["num_hidden_layers"]), "--encoder-embed-dim", str(config["hidden_size"]),
            "--encoder-ffn-embed-dim", str(config["intermediate_size"]),
            "--encoder-attention-heads", str(config["num_attention_heads"]),
            "--max-positions", str(config["max_position_embeddings"]),
            "--tokens-per-sample", str(config["max_position_embeddings"]), "--activation-fn", "gelu",
        ])
        state = convert_state(config, hf, vocab, task.source_dictionary, model.state_dict())
        model.load_state_dict(state, strict=True)
        # The task's data directory is the final one (where dict.txt will be), not the temporary one.
        cfg.task.data = str(Path(out).resolve())
        save_model_checkpoint(model, cfg, tmp / "model.pt")
        report = {
            "source": str(model_dir), "layers": config["num_hidden_layers"], "hidden": config["hidden_size"],
            "heads": config["num_attention_heads"], "ffn": config["intermediate_size"],
            "vocabulary": len(task.source_dictionary), "parameters": sum(p.numel() for p in model.parameters()),
            "hf_layer_norm_eps": config.get("layer_norm_eps"), "fairseq_layer_norm_eps": 1e-5,
        }
        (tmp / "conversion.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def reference_difference(model_dir: str | Path, out: str | Path, sentences: list[str],
                         layer_norm_eps: float | None = None) -> float:
    """Max |difference| of final hidden states: transformers' BertModel vs the converted model.

    ``layer_norm_eps=1e-5`` runs the reference with fairseq's epsilon, isolating the
    conversion itself from the one thing fairseq cannot reproduce."""
    from fairseq.models.roberta import RobertaModel
    from transformers import BertModel, BertTokenizerFast

    import fairseq_defemb  # noqa: F401  (safe globals)

    tokenizer = BertTokenizerFast.from_pretrained(str(model_dir), local_files_only=True)
    overrides = {} if layer_norm_eps is None else {"layer_norm_eps": layer_norm_eps}
    reference = BertModel.from_pretrained(str(model_dir), local_files_only=True, **overrides).eval()
    ours = RobertaModel.from_pretrained(str(out), "model.pt", bpe=None).model.eval()
    dictionary = ours.encoder.dictionary
    worst = 0.0
    for sentence in sentences:
        hf_ids = tokenizer(sentence, return_tensors="pt")["input_ids"]
        pieces = tokenizer.convert_ids_to_tokens(hf_ids[0])
        fs_ids = torch.tensor([[dictionary.index(BERT_TO_FAIRSEQ_SPECIALS.get(p, p)) for p in pieces]])
        with torch.no_grad():
            expected = reference(hf_ids).last_hidden_state
            got, _ = ours.encoder.extract_features(fs_ids)
        worst = max(worst, (expected - got).abs().max().item())
    return worst


VERIFY_SENTENCES = [
    "The sediment settled at the bottom of the river.",
    "A quagga is an extinct subspecies of the plains zebra, 1883.",
    "Definitions give rare tokens their meaning.",
]


def cli_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="defemb-convert-hf", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", required=True, help="Hugging Face BERT directory (config.json, model.safetensors, vocab.txt)")
    parser.add_argument("--out", required=True, help="output fairseq checkpoint directory (written atomically)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--verify", action="store_true", help="compare final hidden states with transformers' BertModel")
    args = parser.parse_args(argv)
    try:
        report = convert(args.model_dir, args.out, args.overwrite)
    except (ConversionError, FileExistsError) as err:
        print(f"defemb-convert-hf: error: {err}", file=sys.stderr)
        return 2
    if args.verify:
        report["max_abs_difference"] = reference_difference(args.model_dir, args.out, VERIFY_SENTENCES)
        report["max_abs_difference_same_eps"] = reference_difference(args.model_dir, args.out, VERIFY_SENTENCES, 1e-5)
        (Path(args.out) / "conversion.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))
    print(f"converted {report['layers']} layers x {report['hidden']} ({report['parameters']:,} parameters, "
          f"{report['vocabulary']:,} symbols) -> {args.out}"
          + (f"; max |h_fairseq - h_hf| = {report['max_abs_difference']:.2e} "
             f"({report['max_abs_difference_same_eps']:.2e} with the reference at fairseq's LayerNorm eps)"
             if args.verify else ""))
    return 0


if __name__ == "__main__":
    sys.exit(cli_main())

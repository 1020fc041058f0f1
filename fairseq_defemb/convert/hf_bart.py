"""BART both ways: transformers' BartForConditionalGeneration/BartModel <-> fairseq's ``bart_large``
(any size).

The two implementations share their parameter names below ``encoder.``/``decoder.`` (HF adds
``model.``), their position offset (2: row i + 2 for position i) and their post-LN layout with an
embedding LayerNorm, so every tensor maps bitwise. What differs:
  * embeddings: HF saves one ``shared`` matrix; fairseq holds ``encoder.embed_tokens``,
    ``decoder.embed_tokens`` and ``decoder.output_projection``, all tied;
  * ``final_logits_bias``: HF adds it to the logits, fairseq has no output bias, so it must be
    zero on import and is written as zeros on export;
  * embedding scale: fairseq's ``--no-scale-embedding`` (True for bart_*) is HF's
    ``scale_embedding = False``;
  * one position table size in HF (``max_position_embeddings``) for encoder and decoder.
"""
from pathlib import Path
from typing import Any

import torch

from fairseq_defemb.convert.hf_common import (
    ACTIVATIONS, HF_ACTIVATIONS, MASK, POSITION_OFFSET, ConversionError, TensorSource, complete_fairseq_state,
    require_positive_ints,
)

TIED = ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "decoder.output_projection.weight")
CONFIG_INTS = ("vocab_size", "d_model", "encoder_layers", "decoder_layers", "encoder_attention_heads",
               "decoder_attention_heads", "encoder_ffn_dim", "decoder_ffn_dim", "max_position_embeddings")
HF_CLASS = "BartForConditionalGeneration"


# -- transformers -> fairseq -------------------------------------------------------------

def check_config(config: dict, path: Path) -> None:
    require_positive_ints(config, CONFIG_INTS, path)
    if config.get("activation_function", "gelu") not in ACTIVATIONS:
        raise ConversionError(f"{path}: activation_function {config['activation_function']!r}; supported: "
                              f"{', '.join(ACTIVATIONS)}")
    if config.get("scale_embedding", False):
        raise ConversionError(f"{path}: scale_embedding true; fairseq's bart_* architectures do not scale "
                              "embeddings (--no-scale-embedding is fixed), so this model would compute differently")
    if config.get("normalize_before") or config.get("add_final_layer_norm"):
        raise ConversionError(f"{path}: normalize_before / add_final_layer_norm set (an mBART-style pre-LN model); "
                              "fairseq's bart_* and transformers' BART are post-LN")
    if not config.get("tie_word_embeddings", True):
        raise ConversionError(f"{path}: tie_word_embeddings false; fairseq's BART ties input and output embeddings")
    if config["d_model"] % config["encoder_attention_heads"] or config["d_model"] % config["decoder_attention_heads"]:
        raise ConversionError(f"{path}: d_model {config['d_model']} is not divisible by the attention heads")
    if config.get("pad_token_id", 1) != 1:
        raise ConversionError(f"{path}: pad_token_id {config['pad_token_id']}; fairseq's <pad> is id 1")


def fairseq_options(config: dict) -> tuple[str, str, list[str]]:
    """(task, arch, options) for build_pretraining_model."""
    positions = str(config["max_position_embeddings"])
    return "denoising", "bart_large", [
        "--encoder-layers", str(config["encoder_layers"]), "--decoder-layers", str(config["decoder_layers"]),
        "--encoder-embed-dim", str(config["d_model"]), "--decoder-embed-dim", str(config["d_model"]),
        "--encoder-ffn-embed-dim", str(config["encoder_ffn_dim"]),
        "--decoder-ffn-embed-dim", str(config["decoder_ffn_dim"]),
        "--encoder-attention-heads", str(config["encoder_attention_heads"]),
        "--decoder-attention-heads", str(config["decoder_attention_heads"]),
        "--max-source-positions", positions, "--max-target-positions", positions, "--tokens-per-sample", positions,
        "--activation-fn", ACTIVATIONS[config.get("activation_function", "gelu")],
        "--dropout", str(config.get("dropout", 0.1)), "--attention-dropout", str(config.get("attention_dropout", 0.0)),
        "--activation-dropout", str(config.get("activation_dropout", 0.0)),
    ]


def check_built(cfg: Any) -> None:
    m = cfg.model
    assert (not m.encoder_normalize_before and not m.decoder_normalize_before and m.layernorm_embedding
            and m.no_scale_embedding and m.share_all_embeddings), \
        "fairseq's bart_large is no longer post-LN with embedding LayerNorms, unscaled and tied embeddings"


def to_fairseq_state(config: dict, hf: dict[str, torch.Tensor], fairseq_state: dict, weights_path: Path) -> tuple[dict, dict]:
    """Map the HF tensors (``model.`` prefix removed) onto fairseq BART's state dict."""
    src = TensorSource(hf, weights_path, f"config.json says {config['encoder_layers']} + {config['decoder_layers']} "
                                         f"layers of width {config['d_model']}")
    shared = src.take("shared.weight")
    for key in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight", "lm_head.weight"):
        src.take_tied(key, shared, "shared.weight")
    if "final_logits_bias" in src:
        bias = src.take("final_logits_bias")
        if bias.any():
            raise ConversionError(f"{weights_path}: final_logits_bias has {int((bias != 0).sum())} non-zero entries; "
                                  "fairseq's BART has no output bias, so the logits would change")
    out = {key: shared for key in TIED}
    for key in fairseq_state:
        if key not in out and not key.endswith(".version"):
            out[key] = src.take(key)
    src.leftover()
    return complete_fairseq_state(out, fairseq_state, weights_path), {"final_logits_bias": "zero (checked)"}


# -- fairseq -> transformers -------------------------------------------------------------

def hf_config(model_cfg: Any, state: dict[str, torch.Tensor], symbols: list[str], source: Path) -> dict:
    """BartConfig keyword arguments for a fairseq BART (dimensions read from the tensors)."""
    def flag(name: str, default: Any) -> Any:
        return getattr(model_cfg, name, default)

    if flag("encoder_normalize_before", False) or flag("decoder_normalize_before", False):
        raise ConversionError(f"{source}: a pre-LN (normalize_before) model, e.g. mBART; transformers' BART is post-LN")
    if "encoder.layernorm_embedding.weight" not in state or "decoder.layernorm_embedding.weight" not in state:
        raise ConversionError(f"{source}: no layernorm_embedding; transformers' BART always applies one")
    activation = flag("activation_fn", "gelu")
    if activation not in HF_ACTIVATIONS:
        raise ConversionError(f"{source}: activation_fn {activation!r} has no transformers equivalent here")
    positions = state["encoder.embed_positions.weight"].size(0)
    if state["decoder.embed_positions.weight"].size(0) != positions:
        raise ConversionError(f"{source}: encoder and decoder position tables differ ({positions} vs "
                              f"{state['decoder.embed_positions.weight'].size(0)} rows); transformers' BART has one size")
    embed = state["encoder.embed_tokens.weight"]
    layers = {side: 1 + max(int(k.split(".")[2]) for k in state if k.startswith(f"{side}.layers."))
              for side in ("encoder", "decoder")}
    return dict(
        vocab_size=embed.size(0), d_model=embed.size(1), max_position_embeddings=positions - POSITION_OFFSET,
        encoder_layers=layers["encoder"], decoder_layers=layers["decoder"],
        encoder_attention_heads=flag("encoder_attention_heads", None),
        decoder_attention_heads=flag("decoder_attention_heads", None),
        encoder_ffn_dim=state["encoder.layers.0.fc1.weight"].size(0),
        decoder_ffn_dim=state["decoder.layers.0.fc1.weight"].size(0),
        activation_function=HF_ACTIVATIONS[activation], scale_embedding=not flag("no_scale_embedding", True),
        dropout=flag("dropout", 0.1), attention_dropout=flag("attention_dropout", 0.0),
        activation_dropout=flag("activation_dropout", 0.0),
        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=2,
        mask_token_id=symbols.index(MASK) if MASK in symbols else None, tie_word_embeddings=True,
        architectures=[HF_CLASS],
    )


def to_hf_state(state: dict[str, torch.Tensor], source: Path) -> tuple[dict[str, torch.Tensor], list[str]]:
    """BartForConditionalGeneration's state dict; returns it and the fairseq keys left out."""
    shared = state[TIED[0]]
    for key in TIED[1:]:
        if key in state and not torch.equal(state[key], shared):
            raise ConversionError(f"{source}: {key} differs from {TIED[0]}; transformers' BART ties them")
    out = {"model.shared.weight": shared, "model.encoder.embed_tokens.weight": shared,
           "model.decoder.embed_tokens.weight": shared, "lm_head.weight": shared,
           "final_logits_bias": torch.zeros(1, shared.size(0), dtype=shared.dtype)}
    dropped = []
    for key, value in state.items():
        if key in TIED or key.endswith(".version"):
            continue
        if key.startswith(("encoder.", "decoder.")):
            out["model." + key] = value
        elif key.startswith("classification_heads."):
            dropped.append(key)
        else:
            raise ConversionError(f"{source}: parameter {key} has no place in transformers' BART")
    return out, dropped

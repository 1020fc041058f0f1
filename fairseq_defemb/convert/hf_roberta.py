"""RoBERTa both ways: transformers' RobertaForMaskedLM/RobertaModel <-> fairseq's ``roberta_base``
(any size).

Both compute positions as padding_idx + 1 + (index among non-pad tokens), so the position
tables map row for row (HF ``max_position_embeddings`` = fairseq ``--max-positions`` + 2).
HF adds a token-type embedding; fairseq has none: on import its row 0 (the only type RoBERTa
uses) is folded into the positions when it is non-zero, on export it is written as zeros.
The layers are post-LN with an embedding LayerNorm on both sides, LayerNorm eps 1e-5 in both.
The LM head: HF's ``lm_head.{dense,layer_norm,bias}`` + decoder tied to the word embeddings
is fairseq's ``encoder.lm_head.{dense,layer_norm,bias,weight}``; HF's head applies gelu
whatever ``hidden_act`` says, fairseq's the encoder's activation, so only gelu heads convert.
"""
from pathlib import Path
from typing import Any

import torch

from fairseq_defemb.convert.hf_common import (
    ACTIVATIONS, BERT_LAYER_KEYS, FAIRSEQ_LAYER_NORM_EPS, HF_ACTIVATIONS, IDENTITY_HEAD_NOTE, POSITION_OFFSET,
    ConversionError, TensorSource, complete_fairseq_state, identity_lm_head, require_positive_ints,
)

ENC = "encoder.sentence_encoder."
HEAD = "encoder.lm_head."
CONFIG_INTS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
               "max_position_embeddings")
IGNORED_KEYS = {"embeddings.position_ids", "embeddings.token_type_ids"}
IGNORED_PREFIXES = ("pooler.",)
HF_CLASS = "RobertaForMaskedLM"


# -- transformers -> fairseq -------------------------------------------------------------

def check_encoder_config(config: dict, path: Path) -> None:
    """What a BERT or RoBERTa config.json must say to fit fairseq's RoBERTa encoder."""
    require_positive_ints(config, CONFIG_INTS, path)
    if config["hidden_size"] % config["num_attention_heads"]:
        raise ConversionError(f"{path}: hidden_size {config['hidden_size']} is not divisible by "
                              f"num_attention_heads {config['num_attention_heads']}")
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise ConversionError(f"{path}: position_embedding_type {config['position_embedding_type']!r}; fairseq "
                              "RoBERTa has absolute learned positions only")
    if config.get("hidden_act", "gelu") not in ACTIVATIONS:
        raise ConversionError(f"{path}: hidden_act {config['hidden_act']!r}; supported: {', '.join(ACTIVATIONS)}")
    if config.get("is_decoder") or config.get("add_cross_attention"):
        raise ConversionError(f"{path}: a decoder / cross-attention model does not fit fairseq's RoBERTa encoder")


def check_config(config: dict, path: Path) -> None:
    check_encoder_config(config, path)
    if config.get("pad_token_id", 1) != 1 or config["max_position_embeddings"] <= POSITION_OFFSET:
        raise ConversionError(f"{path}: pad_token_id {config.get('pad_token_id')} / max_position_embeddings "
                              f"{config['max_position_embeddings']}; fairseq needs <pad> = 1 and positions offset by 2")


def roberta_options(layers: int, dim: int, ffn: int, heads: int, max_positions: int, activation: str,
                    dropout: float, attention_dropout: float) -> list[str]:
    """fairseq-train options building a ``roberta_base``-family encoder of these dimensions."""
    return [
        "--encoder-layers", str(layers), "--encoder-embed-dim", str(dim), "--encoder-ffn-embed-dim", str(ffn),
        "--encoder-attention-heads", str(heads), "--max-positions", str(max_positions),
        "--tokens-per-sample", str(max_positions), "--activation-fn", activation, "--dropout", str(dropout),
        "--attention-dropout", str(attention_dropout), "--activation-dropout", "0.0", "--encoder-layerdrop", "0.0",
    ]


def fairseq_options(config: dict) -> tuple[str, str, list[str]]:
    return "masked_lm", "roberta_base", roberta_options(
        config["num_hidden_layers"], config["hidden_size"], config["intermediate_size"], config["num_attention_heads"],
        config["max_position_embeddings"] - POSITION_OFFSET, ACTIVATIONS[config.get("hidden_act", "gelu")],
        config.get("hidden_dropout_prob", 0.1), config.get("attention_probs_dropout_prob", 0.1))


def check_built(cfg: Any) -> None:
    m = cfg.model
    assert not m.encoder_normalize_before and m.layernorm_embedding and m.no_scale_embedding, \
        "fairseq's roberta_base is no longer post-LN with an embedding LayerNorm and unscaled embeddings"


def to_fairseq_state(config: dict, hf: dict[str, torch.Tensor], fairseq_state: dict, weights_path: Path) -> tuple[dict, dict]:
    """Map the HF tensors (``roberta.`` prefix removed) onto fairseq RoBERTa's state dict."""
    src = TensorSource(hf, weights_path, f"config.json says {config['num_hidden_layers']} layers of width "
                                         f"{config['hidden_size']}")
    words = src.take("embeddings.word_embeddings.weight")
    out = {ENC + "embed_tokens.weight": words, HEAD + "weight": words}
    positions = src.take("embeddings.position_embeddings.weight")
    folded = False
    if "embeddings.token_type_embeddings.weight" in src:
        token_type = src.take("embeddings.token_type_embeddings.weight")[0]
        if token_type.any():  # adding zeros would still flip -0.0 to +0.0 and break the bitwise round trip
            positions, folded = positions + token_type, True
    out[ENC + "embed_positions.weight"] = positions
    out[ENC + "layernorm_embedding.weight"] = src.take("embeddings.LayerNorm.weight")
    out[ENC + "layernorm_embedding.bias"] = src.take("embeddings.LayerNorm.bias")
    for layer in range(config["num_hidden_layers"]):
        for ours, theirs in BERT_LAYER_KEYS.items():
            for param in ("weight", "bias"):
                out[f"{ENC}layers.{layer}.{ours}.{param}"] = src.take(f"encoder.layer.{layer}.{theirs}.{param}")
    if "lm_head.dense.weight" in src:
        if config.get("hidden_act", "gelu") != "gelu":
            raise ConversionError(f"{weights_path}: hidden_act {config['hidden_act']!r} with an LM head: transformers' "
                                  "RobertaLMHead applies gelu, fairseq's the encoder's activation")
        for name in ("dense.weight", "dense.bias", "layer_norm.weight", "layer_norm.bias", "bias"):
            out[HEAD + name] = src.take("lm_head." + name)
        src.take_tied("lm_head.decoder.weight", words, "embeddings.word_embeddings.weight")
        src.take_tied("lm_head.decoder.bias", out[HEAD + "bias"], "lm_head.bias")
        head = "converted from lm_head (RobertaForMaskedLM)"
    else:
        out.update({HEAD + k: v for k, v in identity_lm_head(config["hidden_size"], words.size(0)).items()})
        head = IDENTITY_HEAD_NOTE
    src.leftover(IGNORED_KEYS, IGNORED_PREFIXES)
    notes = {"lm_head": head, "token_type_folded": folded,
             "dropped": sorted({k.rsplit(".", 1)[0] for k in hf if k.startswith(IGNORED_PREFIXES)}),
             "hf_layer_norm_eps": config.get("layer_norm_eps", 1e-12), "fairseq_layer_norm_eps": FAIRSEQ_LAYER_NORM_EPS}
    return complete_fairseq_state(out, fairseq_state, weights_path), notes


# -- fairseq -> transformers -------------------------------------------------------------

def check_exportable(model_cfg: Any, state: dict[str, torch.Tensor], source: Path) -> None:
    if getattr(model_cfg, "encoder_normalize_before", False) or ENC + "layer_norm.weight" in state:
        raise ConversionError(f"{source}: a pre-LN (encoder_normalize_before) RoBERTa; transformers' is post-LN")
    if ENC + "layernorm_embedding.weight" not in state:
        raise ConversionError(f"{source}: no layernorm_embedding; transformers' RoBERTa always applies one")
    if not getattr(model_cfg, "no_scale_embedding", True):
        raise ConversionError(f"{source}: scaled embeddings (no_scale_embedding false); transformers' RoBERTa "
                              "does not scale")
    if not torch.equal(state[HEAD + "weight"], state[ENC + "embed_tokens.weight"]):
        raise ConversionError(f"{source}: encoder.lm_head.weight differs from the token embeddings "
                              "(untie_weights_roberta); transformers' RoBERTa ties them")
    activation = getattr(model_cfg, "activation_fn", "gelu")
    if activation not in HF_ACTIVATIONS:
        raise ConversionError(f"{source}: activation_fn {activation!r} has no transformers equivalent here")


def encoder_dimensions(model_cfg: Any, state: dict[str, torch.Tensor]) -> dict:
    """The dimensions BERT and RoBERTa configs share, read from a fairseq RoBERTa."""
    embed = state[ENC + "embed_tokens.weight"]
    return dict(
        vocab_size=embed.size(0), hidden_size=embed.size(1),
        num_hidden_layers=1 + max(int(k.split(".")[3]) for k in state if k.startswith(ENC + "layers.")),
        num_attention_heads=getattr(model_cfg, "encoder_attention_heads", None),
        intermediate_size=state[ENC + "layers.0.fc1.weight"].size(0),
        hidden_act=HF_ACTIVATIONS[getattr(model_cfg, "activation_fn", "gelu")],
        hidden_dropout_prob=getattr(model_cfg, "dropout", 0.1),
        attention_probs_dropout_prob=getattr(model_cfg, "attention_dropout", 0.1),
        layer_norm_eps=FAIRSEQ_LAYER_NORM_EPS, pad_token_id=1, bos_token_id=0, eos_token_id=2, type_vocab_size=1,
    )


def hf_config(model_cfg: Any, state: dict[str, torch.Tensor], symbols: list[str], source: Path) -> dict:
    """The transformers config (``symbols``: the export's one signature; only BART reads them)."""
    check_exportable(model_cfg, state, source)
    if getattr(model_cfg, "activation_fn", "gelu") != "gelu":
        raise ConversionError(f"{source}: activation_fn {model_cfg.activation_fn!r}: transformers' RobertaLMHead "
                              "applies gelu, fairseq's head the encoder's activation")
    return dict(encoder_dimensions(model_cfg, state), architectures=[HF_CLASS],
                max_position_embeddings=state[ENC + "embed_positions.weight"].size(0))


def encoder_to_hf(state: dict[str, torch.Tensor], prefix: str, first_position: int) -> dict[str, torch.Tensor]:
    """The BERT-layout encoder (``prefix`` = ``roberta.`` or ``bert.``); positions from row ``first_position``."""
    embed = state[ENC + "embed_tokens.weight"]
    layers = 1 + max(int(k.split(".")[3]) for k in state if k.startswith(ENC + "layers."))
    out = {
        prefix + "embeddings.word_embeddings.weight": embed,
        prefix + "embeddings.position_embeddings.weight": state[ENC + "embed_positions.weight"][first_position:],
        prefix + "embeddings.token_type_embeddings.weight": torch.zeros(1, embed.size(1), dtype=embed.dtype),
        prefix + "embeddings.LayerNorm.weight": state[ENC + "layernorm_embedding.weight"],
        prefix + "embeddings.LayerNorm.bias": state[ENC + "layernorm_embedding.bias"],
    }
    for layer in range(layers):
        for ours, theirs in BERT_LAYER_KEYS.items():
            for param in ("weight", "bias"):
                out[f"{prefix}encoder.layer.{layer}.{theirs}.{param}"] = state[f"{ENC}layers.{layer}.{ours}.{param}"]
    return out


def leftover_keys(state: dict[str, torch.Tensor], source: Path) -> list[str]:
    """Classification heads are dropped (returned); anything else unmapped is an error."""
    dropped = []
    for key in state:
        if key.startswith((ENC, HEAD)) or key.endswith(".version"):
            continue
        if key.startswith("classification_heads."):
            dropped.append(key)
        else:
            raise ConversionError(f"{source}: parameter {key} has no place in transformers' RoBERTa")
    return dropped


def to_hf_state(state: dict[str, torch.Tensor], source: Path) -> tuple[dict[str, torch.Tensor], list[str]]:
    """RobertaForMaskedLM's state dict; returns it and the fairseq keys left out."""
    out = encoder_to_hf(state, "roberta.", 0)
    for name in ("dense.weight", "dense.bias", "layer_norm.weight", "layer_norm.bias", "bias"):
        out["lm_head." + name] = state[HEAD + name]
    out["lm_head.decoder.weight"] = state[ENC + "embed_tokens.weight"]
    out["lm_head.decoder.bias"] = state[HEAD + "bias"]
    return out, leftover_keys(state, source)

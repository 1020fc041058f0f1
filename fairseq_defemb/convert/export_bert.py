"""A fairseq RoBERTa with a WordPiece dictionary (a BERT converted by ``defemb-convert-hf``, e.g.
the demo's MiniLM, surgered or not) -> transformers' ``BertForMaskedLM`` + ``BertTokenizer``.

transformers' RoBERTa tokenizer is byte-level BPE only, so a WordPiece vocabulary goes back to
the BERT classes. The inverse of fairseq_defemb.convert.hf_bert:
  * ``vocab.txt`` = the fairseq dictionary in row order with ``<s> <pad> </s> <unk> <mask>``
    renamed ``[CLS] [PAD] [SEP] [UNK] [MASK]``: fairseq row k is BERT id k;
  * fairseq position row i + 2 is BERT position i (BERT counts from 0, no padding offset);
    the token-type embedding (one type) is zero;
  * ``layer_norm_eps`` = 1e-5, fairseq's: the exported model computes what the fairseq model
    computes (not what the original BERT at 1e-12 did; that difference is the converter's,
    measured by ``defemb-convert-hf --verify``);
  * the LM head: ``cls.predictions.transform.{dense,LayerNorm}``, ``cls.predictions.bias``,
    decoder tied to the word embeddings. BERT's head applies ``hidden_act``, as fairseq's does.
"""
from pathlib import Path
from typing import Any

import torch

from fairseq_defemb.convert.hf_common import POSITION_OFFSET, ConversionError
from fairseq_defemb.convert.hf_roberta import ENC, HEAD, check_exportable, encoder_dimensions, encoder_to_hf, leftover_keys

FAIRSEQ_TO_BERT = {"<s>": "[CLS]", "<pad>": "[PAD]", "</s>": "[SEP]", "<unk>": "[UNK]", "<mask>": "[MASK]"}
HF_CLASS = "BertForMaskedLM"


def hf_config(model_cfg: Any, state: dict[str, torch.Tensor], symbols: list[str], source: Path) -> dict:
    """The transformers config (``symbols``: the export's one signature; only BART reads them)."""
    check_exportable(model_cfg, state, source)
    return dict(encoder_dimensions(model_cfg, state), architectures=[HF_CLASS], pad_token_id=1,
                max_position_embeddings=state[ENC + "embed_positions.weight"].size(0) - POSITION_OFFSET)


def to_hf_state(state: dict[str, torch.Tensor], source: Path) -> tuple[dict[str, torch.Tensor], list[str]]:
    out = encoder_to_hf(state, "bert.", POSITION_OFFSET)
    prefix = "cls.predictions."
    out.update({
        prefix + "transform.dense.weight": state[HEAD + "dense.weight"],
        prefix + "transform.dense.bias": state[HEAD + "dense.bias"],
        prefix + "transform.LayerNorm.weight": state[HEAD + "layer_norm.weight"],
        prefix + "transform.LayerNorm.bias": state[HEAD + "layer_norm.bias"],
        prefix + "bias": state[HEAD + "bias"], prefix + "decoder.bias": state[HEAD + "bias"],
        prefix + "decoder.weight": state[ENC + "embed_tokens.weight"],
    })
    return out, leftover_keys(state, source)


def write_tokenizer(tmp: Path, symbols: list[str], lowercase: bool | None, max_length: int) -> dict:
    from transformers import BertTokenizer
    from transformers.models.bert.tokenization_bert import load_vocab

    tokens = [FAIRSEQ_TO_BERT.get(s, s) for s in symbols]
    for row, token in enumerate(tokens):
        if "\n" in token:
            raise ConversionError(f"dict.txt row {row}: token {token!r} has a newline; vocab.txt cannot hold it")
    if lowercase is None:
        # An uncased vocabulary has (almost) no upper-case pieces: uncased MiniLM has 2 of 30,517
        # ("ℝ", "##ℝ"); a cased BERT has thousands ("The", "##A", ...).
        ordinary = [s for s in symbols if s not in FAIRSEQ_TO_BERT and not s.startswith("[")]
        lowercase = sum(any(c.isupper() for c in s) for s in ordinary) < 0.01 * len(ordinary)
    (tmp / "vocab.txt").write_text("".join(f"{t}\n" for t in tokens), encoding="utf-8")
    tokenizer = BertTokenizer(vocab=load_vocab(str(tmp / "vocab.txt")), do_lower_case=lowercase, model_max_length=max_length)
    tokenizer.save_pretrained(tmp)
    return {"lowercase": lowercase, "mask_id": symbols.index("<mask>") if "<mask>" in symbols else None}

"""Tiny random transformers BART and RoBERTa with a tiny GPT-2-like byte-level BPE, built in the
tests (no download), and a tiny fairseq BART whose dict.txt uses the same BPE ids."""
import json
from pathlib import Path

import torch

from fairseq_defemb.convert.gpt2_vocab import write_merges_file

# Text the tiny BPE learns whole words from (byte-level, so accents and CJK become byte symbols).
BPE_TEXT = ("The sediment settled at the bottom of the river. A quagga, last seen in 1883, stood tall! "
            "Definitions give rare tokens meaning: café, naïve, Zürich, 東京. Hello world 42 ing ed")


def byte_encoder() -> dict[int, str]:
    from fairseq.data.encoders.gpt2_bpe_utils import bytes_to_unicode

    return bytes_to_unicode()


def tiny_bpe() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE: the 256 byte symbols, plus left-to-right merges that spell each word of
    BPE_TEXT (with its leading space). HF layout: <s> <pad> </s> <unk>, the tokens (merged
    ones first, as in a frequency order), one madeupword filler, <mask> last."""
    enc = byte_encoder()
    merges, merged = [], []
    for word in BPE_TEXT.split(" "):
        symbols = "".join(enc[b] for b in (" " + word).encode("utf-8"))
        current = symbols[0]
        for ch in symbols[1:]:
            if current + ch not in merged:
                merges.append((current, ch))
                merged.append(current + ch)
            current += ch
    tokens = ["<s>", "<pad>", "</s>", "<unk>", *merged, *[enc[b] for b in range(256)], "madeupword0000", "<mask>"]
    return {t: i for i, t in enumerate(tokens)}, merges


def save_tiny_hf(root: Path, family: str, head: bool = True, seed: int = 0, token_type: bool = False,
                 bpe: tuple[dict[str, int], list[tuple[str, str]]] | None = None, spread: float = 0.3,
                 **config) -> Path:
    """A random 2-layer transformers model of ``family`` with the tiny BPE tokenizer, saved as
    transformers saves it; parameters spread away from their init so every mapping matters.
    RoBERTa's token-type embedding is zero unless ``token_type``; ``bpe`` replaces the tiny BPE."""
    from transformers import (
        BartConfig, BartForConditionalGeneration, BartModel, BartTokenizer, RobertaConfig, RobertaForMaskedLM,
        RobertaModel, RobertaTokenizer,
    )

    vocab, merges = bpe or tiny_bpe()
    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    if family == "bart":
        settings = dict(vocab_size=len(vocab), d_model=16, encoder_layers=2, decoder_layers=2,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                        max_position_embeddings=48)
        settings.update(config)
        model = (BartForConditionalGeneration if head else BartModel)(BartConfig(**settings))
        tokenizer = BartTokenizer(vocab=vocab, merges=merges)
    else:
        settings = dict(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=42, type_vocab_size=1, layer_norm_eps=1e-5)
        settings.update(config)
        model = (RobertaForMaskedLM if head else RobertaModel)(RobertaConfig(**settings))
        tokenizer = RobertaTokenizer(vocab=vocab, merges=merges)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(0, spread if p.dim() > 1 else 0.5).add_(1.0 if p.dim() == 1 and "norm" in name.lower() else 0.0)
            if "token_type" in name and not token_type:
                p.zero_()
    model.save_pretrained(root, safe_serialization=True)
    tokenizer.save_pretrained(root)
    return root


def write_tiny_gpt2_files(out: Path) -> tuple[Path, Path]:
    """encoder.json / vocab.bpe of the tiny BPE (BPE id = its HF id)."""
    vocab, merges = tiny_bpe()
    out.mkdir(parents=True, exist_ok=True)
    literal = {"<s>", "<pad>", "</s>", "<unk>", "madeupword0000", "<mask>"}
    encoder = {t: i for t, i in vocab.items() if t not in literal}
    (out / "encoder.json").write_text(json.dumps(encoder, ensure_ascii=False), encoding="utf-8")
    write_merges_file(out / "vocab.bpe", merges)
    return out / "encoder.json", out / "vocab.bpe"


def write_tiny_gpt2_dict(path: Path) -> Path:
    """A fairseq dict.txt over the tiny BPE ids, in id order, with one madeupword filler."""
    vocab, _ = tiny_bpe()
    symbols = [str(i) if not t.startswith("madeupword") else t for t, i in vocab.items() if i >= 4 and t != "<mask>"]
    path.write_text("".join(f"{s} {len(symbols) - k}\n" for k, s in enumerate(symbols)))
    return path


def gpt2_hf_vocab(encoder_json: Path, vocab_bpe: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A roberta.base/bart.base-shaped HF vocabulary over GPT-2's real BPE: <s> <pad> </s> <unk>,
    the 50,257 GPT-2 tokens, 3 madeupword fillers, <mask> (50,265 ids)."""
    from fairseq_defemb.convert.gpt2_vocab import read_merges_file

    encoder = json.loads(Path(encoder_json).read_text(encoding="utf-8"))
    tokens = ["<s>", "<pad>", "</s>", "<unk>", *sorted(encoder, key=encoder.get),
              *[f"madeupword{k:04d}" for k in range(3)], "<mask>"]
    return {t: i for i, t in enumerate(tokens)}, read_merges_file(Path(vocab_bpe))

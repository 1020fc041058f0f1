"""Tiny but real fairseq RoBERTa and BART checkpoints, built inside the tests.

They go through fairseq's own option parsing, task and model builders and are saved
in the trainer's format, so every stock fairseq loader treats them like
``roberta.base``/``bart.large``.
"""
import shutil
from pathlib import Path

import torch

from fairseq_defemb.convert.fairseq_checkpoint import build_pretraining_model, save_model_checkpoint

# Short words, so the tests can write readable prompts with them. Order = frequency.
TINY_WORDS = (
    "the of and a to in is was for on as with by he at from his an it are that this be "
    "one two three word means small large very not or which also has have had new first "
    "used make made kind part used person place thing act state quality something "
    "number water light time animal plant color sound form body house tree stone bird "
    "fish fruit metal cloth tool song game road ship city river hill sea star moon sun "
    "cat dog cow pig hen fox owl bee ant elk yak gnu emu zebu quagga okapi dugong"
).split()


def write_dict(path: str | Path, symbols=TINY_WORDS) -> Path:
    """A fairseq dict.txt with unique symbols and descending counts."""
    seen = list(dict.fromkeys(symbols))
    path = Path(path)
    path.write_text("".join(f"{s} {1000 * (len(seen) - i)}\n" for i, s in enumerate(seen)))
    return path


ARCH_ARGS = {
    "roberta": ("masked_lm", "roberta_base", [
        "--encoder-layers", "2", "--encoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64",
        "--encoder-attention-heads", "2", "--max-positions", "64", "--tokens-per-sample", "64",
    ]),
    "bart": ("denoising", "bart_base", [
        "--encoder-layers", "2", "--decoder-layers", "2", "--encoder-embed-dim", "32",
        "--decoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64", "--decoder-ffn-embed-dim", "64",
        "--encoder-attention-heads", "2", "--decoder-attention-heads", "2",
        "--max-source-positions", "64", "--max-target-positions", "64", "--tokens-per-sample", "64",
    ]),
}


def make_tiny_checkpoint(out_dir: str | Path, family: str, dict_path: str | Path | None = None, seed: int = 0) -> Path:
    """Write ``out_dir/model.pt`` and ``out_dir/dict.txt``; return the model.pt path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if dict_path is None:
        write_dict(out / "dict.txt")
    elif Path(dict_path).resolve() != (out / "dict.txt").resolve():
        shutil.copyfile(dict_path, out / "dict.txt")
    task, arch, extra = ARCH_ARGS[family]
    torch.manual_seed(seed)
    _, model, cfg = build_pretraining_model(out, task, arch, extra)
    return save_model_checkpoint(model, cfg, out / "model.pt")

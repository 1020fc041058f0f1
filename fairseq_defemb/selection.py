"""Which embedding rows surgery replaces (paper Section 5.3).

Rank the vocabulary by pretraining frequency: a fairseq dictionary lists symbols by
descending count, so the id order is the frequency rank. Keep the tokens that occur in the
task data (V_task) and request the last ``k = min(floor(alpha% * |V|), |V_task|)`` of them,
|V| counting every non-special symbol. Requested tokens without a predicted embedding are
not replaced (paper: "tokens without a corresponding definition were excluded from
replacement"); they still use up the budget, so ``alpha`` selects the same frequency band
whatever the definition coverage, and the report counts them.
"""
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fairseq.data import Dictionary, data_utils

from fairseq_defemb.vocabulary import dictionary_sha256

SPECIAL_PREFIXES = ("madeupword",)


def special_ids(dictionary: Dictionary) -> set[int]:
    """Never touched: <s> <pad> </s> <unk>, <mask>, and fairseq's padding fillers."""
    ids = set(range(dictionary.nspecial))
    ids |= {i for i, s in enumerate(dictionary.symbols) if s == "<mask>" or s.startswith(SPECIAL_PREFIXES)}
    return ids


@dataclass
class Selection:
    budget: int
    requested: list[int]
    replaced: list[int]
    without_definition: list[int]
    task_vocabulary: int


def select_rows(dictionary: Dictionary, task_ids: set[int], predicted_ids: set[int], alpha: float) -> Selection:
    if not 0 <= alpha <= 100:
        raise ValueError(f"--alpha {alpha}: must be a percentage in [0, 100] (paper: CNNDM 100, XSum 10, RTE 3)")
    specials = special_ids(dictionary)
    vocabulary = len(dictionary) - len(specials)
    in_task = sorted(i for i in task_ids if i not in specials and 0 <= i < len(dictionary))
    budget = min(math.floor(alpha / 100 * vocabulary), len(in_task))
    requested = in_task[len(in_task) - budget:] if budget else []
    return Selection(
        budget=budget,
        requested=requested,
        replaced=[i for i in requested if i in predicted_ids],
        without_definition=[i for i in requested if i not in predicted_ids],
        task_vocabulary=len(in_task),
    )


def _binarized_prefixes(directory: Path) -> list[str]:
    return sorted({str(p.with_suffix("")) for p in directory.glob("*.bin") if p.with_suffix(".idx").is_file()})


def task_token_ids(task_data: str | Path, dictionary: Dictionary, dict_path: str | Path,
                   gpt2_encoder_json: str | None = None, gpt2_vocab_bpe: str | None = None) -> set[int]:
    """Token ids occurring in the task data: a fairseq-preprocess directory (every
    ``*.bin``/``*.idx`` in it) or raw text files, encoded with GPT-2 BPE."""
    path = Path(task_data)
    if not path.exists():
        raise FileNotFoundError(f"--task-data {path}: not found (a fairseq-preprocess directory or raw text files)")
    if path.is_dir() and _binarized_prefixes(path):
        for other in sorted(path.glob("dict*.txt")):
            if dictionary_sha256(other) != dictionary_sha256(dict_path):
                raise ValueError(f"{other} differs from --dict {dict_path}: the task data was binarized with another "
                                 "dictionary; rerun fairseq-preprocess with --srcdict/--tgtdict set to the model's dict.txt")
        ids: set[int] = set()
        for prefix in _binarized_prefixes(path):
            dataset = data_utils.load_indexed_dataset(prefix, None)
            if dataset is None:
                raise ValueError(f"{prefix}.bin/.idx: not a fairseq indexed dataset")
            for start in range(0, len(dataset), 4096):
                ids.update(np.unique(np.concatenate([dataset[i].numpy() for i in range(start, min(start + 4096, len(dataset)))])).tolist())
        if ids and max(ids) >= len(dictionary):
            raise ValueError(f"--task-data {path}: ids up to {max(ids)} but --dict has {len(dictionary)} symbols")
        return ids
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    if not (gpt2_encoder_json and gpt2_vocab_bpe):
        raise ValueError(f"--task-data {path}: raw text needs --gpt2-encoder-json and --gpt2-vocab-bpe to tokenize it "
                         "(or pass a fairseq-preprocess directory)")
    from fairseq.data.encoders.gpt2_bpe_utils import get_encoder

    bpe = get_encoder(gpt2_encoder_json, gpt2_vocab_bpe)
    ids = set()
    for file in files:
        with file.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                ids.update(dictionary.index(str(t)) for t in bpe.encode(line.rstrip("\n")))
    ids.discard(dictionary.unk())
    return ids

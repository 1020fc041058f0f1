"""Which embedding rows surgery replaces (paper Section 5.3).

Rank the vocabulary by pretraining frequency: a fairseq dictionary lists symbols by
descending count, so the id order is the frequency rank. Keep the tokens that occur in the
task data (V_task) and request the last ``k = min(floor(alpha% * |V|), |V_task|)`` of them,
|V| counting every non-special symbol. Specials (``<s> <pad> </s> <unk>``, ``<mask>`` and
fairseq's ``madeupwordNNNN`` fillers) are never in V or V_task.

Budget rule (decided here, tested in tests/test_selection.py): requested tokens without a
predicted embedding are *not* replaced (paper: "tokens without a corresponding definition
were excluded from replacement") and they still use up the budget: the k requested tokens
are fixed by alpha and the task alone, and no more frequent token is pulled in to take an
undefined token's place. So alpha selects the same frequency band whatever the definition
coverage, and the report counts the undefined ones ("requested rows with no definition").
"""
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fairseq_defemb.data.gpt2_bpe import gpt2_bpe_utils
from fairseq_defemb.data.indexed import MMapIndexed, is_mmap_dataset, read_items
from fairseq_defemb.data.vocabulary import MASK_SYMBOL, Vocabulary

SPECIAL_PREFIXES = ("madeupword",)


def special_ids(dictionary: Vocabulary) -> set[int]:
    """Never touched: <s> <pad> </s> <unk>, <mask>, and fairseq's padding fillers."""
    ids = set(range(dictionary.nspecial))
    ids |= {i for i, s in enumerate(dictionary.symbols) if s == MASK_SYMBOL or s.startswith(SPECIAL_PREFIXES)}
    return ids


@dataclass
class Selection:
    budget: int                    # k = min(floor(alpha% |V|), |V_task|)
    requested: list[int]           # the k rarest task tokens, in frequency (= id) order
    replaced: list[int]            # requested tokens that have a prediction
    without_definition: list[int]  # requested tokens that have none (skipped, still in the budget)
    task_vocabulary: int           # |V_task|
    vocabulary: int = 0            # |V|, non-special symbols


def select_rows(dictionary: Vocabulary, task_ids: set[int], predicted_ids: set[int], alpha: float) -> Selection:
    """The rows to replace. ``task_ids``: ids occurring in the task data; ``predicted_ids``:
    ids with a predicted embedding; ``alpha``: percentage of |V| in [0, 100]."""
    if not 0 <= alpha <= 100:
        raise ValueError(f"--alpha {alpha}: must be a percentage in [0, 100] (paper: CNNDM 100, XSum 10, RTE 3)")
    specials = special_ids(dictionary)
    vocabulary = len(dictionary) - len(specials)
    in_task = sorted(i for i in task_ids if i not in specials and 0 <= i < len(dictionary))
    # round() first so that e.g. 7% of 100 (7.000000000000001) is 7, not a float artefact away.
    budget = min(math.floor(round(alpha / 100 * vocabulary, 9)), len(in_task))
    requested = in_task[len(in_task) - budget:] if budget else []
    return Selection(
        budget=budget,
        requested=requested,
        replaced=[i for i in requested if i in predicted_ids],
        without_definition=[i for i in requested if i not in predicted_ids],
        task_vocabulary=len(in_task),
        vocabulary=vocabulary,
    )


def _binarized_prefixes(directory: Path) -> list[str]:
    return sorted({str(p.with_suffix("")) for p in directory.glob("*.bin") if p.with_suffix(".idx").is_file()})


def split_of(prefix: str) -> str:
    """The split a fairseq-preprocess file belongs to: ``train.source-target.source`` and
    ``train`` are ``train``; ``train1`` (fairseq's second training set) is ``train`` too."""
    name = Path(prefix).name.split(".")[0]
    return name.rstrip("0123456789") or name


def _prefixes_of_splits(directory: Path, task_splits: tuple[str, ...]) -> list[str]:
    """The binarized files of ``task_splits`` (``("all",)``: every one) in ``directory``;
    a requested split the directory lacks is an error naming what it has."""
    prefixes = _binarized_prefixes(directory)
    if task_splits == ("all",):
        return prefixes
    found = sorted({split_of(p) for p in prefixes})
    missing = [s for s in task_splits if s not in found]
    if missing:
        raise ValueError(
            f"--task-data {directory}: no {', '.join(missing)} split (found {', '.join(found)}). Pass --task-splits "
            "with the fine-tuning split(s) the directory has (default train; 'all' reads every split, the test "
            "references included)"
        )
    return [p for p in prefixes if split_of(p) in task_splits]


def _check_task_dictionaries(directory: Path, dictionary: Vocabulary, dict_path: str | Path) -> None:
    """fairseq-preprocess writes the dictionary it binarized with beside the data
    (dict.txt, dict.{lang}.txt): its symbols must be the model's (without <mask>)."""
    expected = [s for s in dictionary.symbols if s != MASK_SYMBOL]
    for other in sorted(directory.glob("dict*.txt")):
        symbols = Vocabulary.load(other).symbols
        if symbols != expected:
            raise ValueError(
                f"{other} differs from --dict {dict_path}: the task data was binarized with another dictionary; "
                "rerun fairseq-preprocess with --srcdict/--tgtdict set to the model's dict.txt"
            )


def _ids_in_dataset(prefix: str, size: int) -> np.ndarray:
    """Occurrence counts (length ``size``) of every id in one binarized split."""
    counts = np.zeros(size, dtype=np.int64)

    def add(tokens: np.ndarray) -> None:
        if len(tokens) and int(tokens.max()) >= size:
            raise ValueError(f"{prefix}.bin: token id {int(tokens.max())} but --dict has only {size} symbols; "
                             "the task data was binarized with another dictionary")
        counts[:] += np.bincount(tokens, minlength=size)[:size]

    if is_mmap_dataset(prefix):
        # The .bin is the concatenation of all items: count it in flat chunks, no per-item loop.
        flat = MMapIndexed(prefix).tokens()
        for start in range(0, len(flat), 1 << 26):
            add(flat[start:start + (1 << 26)].astype(np.int64))
    else:
        try:
            items = read_items(prefix)
        except FileNotFoundError:
            raise ValueError(f"{prefix}.bin/.idx: not a fairseq indexed dataset") from None
        for start in range(0, len(items), 4096):
            chunk = items[start:start + 4096]
            add(np.concatenate(chunk) if chunk else np.zeros(0, np.int64))
    return counts


@dataclass
class TaskTokens:
    ids: set[int]      # token ids occurring in what was read
    files: list[str]   # what was read: the .bin files of the chosen splits, and raw text files as given
    splits: tuple[str, ...]


def check_task_splits(task_splits: tuple[str, ...] | list[str] | str) -> tuple[str, ...]:
    """``task_splits`` as a tuple of split names, or ``("all",)``."""
    splits = tuple(s.strip() for s in ([task_splits] if isinstance(task_splits, str) else task_splits) if s.strip())
    if not splits or ("all" in splits and len(splits) > 1):
        raise ValueError(f"--task-splits {','.join(splits)}: name the splits to read (e.g. train, or train,valid), "
                         "or all on its own")
    return splits


def task_token_ids(task_data, dictionary: Vocabulary, dict_path: str | Path,
                   gpt2_encoder_json: str | None = None, gpt2_vocab_bpe: str | None = None, *,
                   task_splits: tuple[str, ...] | list[str] | str = ("train",)) -> TaskTokens:
    """Token ids occurring in the task data (V_task): one or more fairseq-preprocess
    directories or raw text files (or directories of them), encoded with GPT-2 BPE.

    In a fairseq-preprocess directory only the ``task_splits`` are read (both languages),
    ``train`` by default: V_task is the fine-tuning data's vocabulary (paper Section 5.3), and
    a token that occurs only in the test references must not decide what is replaced.
    ``("all",)`` reads every split. Raw text files are read as given.
    """
    splits = check_task_splits(task_splits)
    paths = [Path(p) for p in ([task_data] if isinstance(task_data, (str, Path)) else task_data)]
    ids: set[int] = set()
    files: list[str] = []
    raw: list[Path] = []
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"--task-data {path}: not found (a fairseq-preprocess directory or raw text files)")
        if path.is_dir() and _binarized_prefixes(path):
            _check_task_dictionaries(path, dictionary, dict_path)
            prefixes = _prefixes_of_splits(path, splits)
            counts = sum(_ids_in_dataset(prefix, len(dictionary)) for prefix in prefixes)
            ids.update(np.flatnonzero(counts).tolist())
            files.extend(f"{prefix}.bin" for prefix in prefixes)
        elif path.is_dir():
            nested = sorted({str(p.parent) for p in path.rglob("*.bin")})
            if nested:
                raise ValueError(f"--task-data {path}: no .bin/.idx directly inside, but in {', '.join(nested)}; "
                                 "pass the directories binarized with the model's dictionary (e.g. RTE-bin/input0 "
                                 "RTE-bin/input1), not the label directory")
            raw.extend(sorted(p for p in path.iterdir() if p.is_file()))
        else:
            raw.append(path)
    if raw:
        if not (gpt2_encoder_json and gpt2_vocab_bpe):
            raise ValueError(f"--task-data {raw[0]}: raw text needs --gpt2-encoder-json and --gpt2-vocab-bpe to "
                             "tokenize it (or pass a fairseq-preprocess directory)")
        for f in (gpt2_encoder_json, gpt2_vocab_bpe):
            if not Path(f).is_file():
                raise FileNotFoundError(f"{f}: not found (GPT-2 BPE files: encoder.json and vocab.bpe)")
        bpe = gpt2_bpe_utils().get_encoder(gpt2_encoder_json, gpt2_vocab_bpe)
        for file in raw:
            with file.open(encoding="utf-8", errors="replace") as handle:
                for line in handle:
                    # the symbols of fairseq's GPT-2 dict.txt are the BPE ids as strings
                    ids.update(dictionary.index(str(t)) for t in bpe.encode(line.rstrip("\n")))
            files.append(str(file))
        ids.discard(dictionary.unk())
    return TaskTokens(ids=ids, files=files, splits=splits)

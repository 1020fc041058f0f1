"""Rows for new tokens: DefinitionEMB's prediction from their definitions, or a baseline.

The baselines are the held-out reconstruction measurement's (``fairseq_defemb.analysis.reconstruction``),
applied to tokens the model does not have yet:

* ``mean``: the mean of all rows (transformers' ``mean_resizing``);
* ``description-mean``: per definition the mean row of its tokens, averaged over the word's
  definitions (LlamaFactory's description init);
* ``subwords``: the mean row of the pieces the tokenizer gives the form today;
* ``defemb``: a definition model (``fairseq-train --task definition_cloze`` or ``defemb-fit``)
  reads the word's prompts, built with the corpus builder's template, and ``defemb-predict``'s
  code averages its predictions per definition. The new form fills its variant spans as one
  token the definition model does not have: a placeholder id past its vocabulary, hidden
  (``<mask>``) wherever it occurs in the model's input, exactly as the reconstruction
  measurement hides a held-out token. The prompt is the reconstruction's ``heldout`` split's.
"""
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fairseq_defemb.add_tokens.words import AddTokensError, NewWord
from fairseq_defemb.analysis.reconstruction import definition_mean_init, mean_row_init, subword_init
from fairseq_defemb.options import INITS
from preprocess.corpus.entries import SkipLog
from preprocess.corpus.prompts import Prompt, prompt_from_variants



@dataclass
class Target:
    """One row to set: a form of a new word (or of an existing one under ``--replace``)."""

    word: NewWord
    form: str  # the text the tokenizer matches: " covid", "covid", or a WordPiece word
    word_initial: bool
    row: int  # its id in the grown vocabulary
    existing: bool  # already a token, re-initialised (--replace)
    stock_pieces: list[int]  # the ids the tokenizer gives the form without the new token
    symbol: str  # its dict.txt symbol (GPT-2: the BPE id) or tokenizer token


def check_request(*, init: str, source: Path, out, overwrite: bool) -> None:
    """The checks both model kinds make before reading anything large."""
    if init not in INITS:
        raise AddTokensError(f"--init {init}: must be one of {', '.join(INITS)}")
    if Path(out).exists() and not overwrite:
        raise FileExistsError(f"--out {out}: exists; pick a new directory or pass --overwrite")
    if Path(out).resolve() == Path(source).resolve():
        raise AddTokensError(f"--out {out}: is the input directory; the input is never overwritten")


def refuse_present(present: list[str]) -> None:
    """A word with a form already in the vocabulary stops the run unless --replace."""
    if present:
        raise AddTokensError(
            f"{len(present)} word(s) already in the vocabulary: {'; '.join(present[:10])}. Remove them from --words, "
            "or pass --replace to re-initialise their rows instead")


def present_note(word: NewWord, existing: dict[str, int]) -> str:
    return (f"{word.word!r} ({word.lines[0]}: {', '.join(repr(f) for f in existing)} "
            f"= id {', '.join(str(i) for i in existing.values())})")


def word_prompts(targets: list[Target], placeholders: list[int], backend, max_tokens: int,
                 skips: SkipLog) -> list[Prompt]:
    """One prompt per (word, definition): the corpus template with the word's forms as one-token
    variant spans (``placeholders[i]`` for ``targets[i]``). A word none of whose definitions
    makes a prompt is an error."""
    by_word: dict[int, list[int]] = {}
    for i, target in enumerate(targets):
        by_word.setdefault(id(target.word), []).append(i)
    prompts = []
    for members in by_word.values():
        word = targets[members[0]].word
        variants = [([placeholders[i]], targets[i].word_initial) for i in members]
        made = 0
        for entry, where in zip(word.entries, word.lines):
            prompt = prompt_from_variants(entry, variants, backend, max_tokens, skips)
            if prompt is None:
                skips.skip("definition not usable (see the reasons above)", where)
            else:
                prompts.append(prompt)
                made += 1
        if not made:
            raise AddTokensError(f"{word.word!r} ({', '.join(word.lines)}): no definition makes a prompt "
                                 f"({skips.as_dict()}); fix the definitions or raise --max-prompt-tokens")
    return prompts


def baseline_rows(init: str, matrix: np.ndarray, targets: list[Target], placeholders: list[int],
                  prompts: list[Prompt], excluded: set[int]) -> tuple[np.ndarray, dict]:
    """``mean``, ``description-mean`` or ``subwords`` rows for ``targets`` (float64) and a note.
    Zero vectors (no usable definition token, no piece) fall back to the mean row, counted."""
    ids = np.asarray(placeholders, dtype=np.int64)
    if init == "mean":
        return mean_row_init(matrix, ids), {}
    if init == "description-mean":
        rows, empty = definition_mean_init(matrix, ids, [np.asarray(p.ids) for p in prompts],
                                           [np.asarray(p.spans).reshape(-1) for p in prompts],
                                           [p.definition_start for p in prompts], excluded)
    else:
        pieces = {p: t.stock_pieces for p, t in zip(placeholders, targets)}
        rows, empty = subword_init(matrix, ids, pieces.__getitem__, excluded)
    zero = ~rows.any(axis=1)
    rows[zero] = matrix.astype(np.float64).mean(axis=0)
    return rows, {"mean_row_fallbacks": [targets[i].form for i in np.nonzero(zero)[0]]} if empty else {}


def defemb_rows(definition_model: str | Path, dict_path: str | Path, placeholders: list[int], prompts: list[Prompt],
                *, id_map: np.ndarray | None = None, max_tokens: int = 8192, device: str = "cpu",
                progress: bool = False, definition_corpus: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """DefinitionEMB's rows for ``placeholders`` (float64) and their definition counts: the prompts
    written as the ``heldout`` split of a temporary corpus over ``dict_path`` whose held-out ids
    are the placeholders, predicted by ``fairseq_defemb.predict``. ``id_map[i]`` is the ``dict_path`` id
    of the prompts' id ``i`` when they differ (a converted BERT); placeholders, past it, stay.
    Centred rows (the model's ``--prediction-mean rows``) take their reference tokens from
    ``definition_corpus``, by default the corpus the model's checkpoint says it was trained on."""
    from preprocess.corpus.holdout import HELDOUT_SPLIT, write_holdout
    from fairseq_defemb.data.corpus_format import DICT_FILE, CorpusWriter, write_metadata
    from fairseq_defemb.predict import load_definition_model, predict_with_model, prediction_mean_of, task_on_corpus

    with tempfile.TemporaryDirectory(prefix="defemb-add-tokens-") as tmp:
        corpus = Path(tmp)
        (corpus / DICT_FILE).write_bytes(Path(dict_path).read_bytes())
        writer = CorpusWriter(corpus, HELDOUT_SPLIT, max(placeholders) + 1)
        for prompt in prompts:
            ids = np.asarray(prompt.ids, dtype=np.int64)
            if id_map is not None:
                known = ids < len(id_map)
                ids[known] = id_map[ids[known]]
            writer.add(ids, prompt.spans)
        writer.finalize()
        write_metadata(corpus, corpus / DICT_FILE, {HELDOUT_SPLIT: writer.count}, built_by="defemb-add-tokens")
        write_holdout(corpus, {"ids": sorted(set(placeholders))})
        try:
            model, task = load_definition_model(definition_model, corpus, device)
        except ValueError as err:
            if "is not the dictionary" in str(err):
                raise AddTokensError(
                    f"--definition-model {definition_model}: trained for another dictionary than {dict_path}; "
                    "train (or defemb-fit) it on a corpus built with this model's dict.txt") from None
            raise AddTokensError(f"--definition-model {definition_model}: {err}") from None
        reference = None
        if prediction_mean_of(task) == "rows":
            # the new words' corpus has no token whose row is known: the model's own corpus has
            source = Path(definition_corpus or task.trained_on_corpus)
            if not (source / "corpus.json").is_file():
                raise AddTokensError(
                    f"--definition-model {definition_model}: its rows are centred on tokens of the corpus it was "
                    f"trained on, and {source} holds no corpus (moved or deleted?); pass that corpus with "
                    "--definition-corpus DIR")
            try:
                reference = task_on_corpus(task, source)
            except ValueError as err:
                raise AddTokensError(f"--definition-corpus {source}: {err}") from None
        ids, vectors, counts = predict_with_model(model, task, (HELDOUT_SPLIT,), max_tokens=max_tokens,
                                                  progress=progress, reference_task=reference)
    slot = {int(t): i for i, t in enumerate(ids.tolist())}
    order = [slot[p] for p in placeholders]
    return vectors.numpy()[order].astype(np.float64), counts.numpy()[order]


def nearest_neighbours(rows: np.ndarray, matrix: np.ndarray, candidates: np.ndarray, surfaces: list[str],
                       k: int = 5) -> list[list[dict]]:
    """Per new row, the ``k`` existing rows among ``candidates`` nearest by cosine."""
    def unit(x):
        norms = np.linalg.norm(x, axis=-1, keepdims=True)
        return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)

    cos = unit(rows.astype(np.float64)) @ unit(matrix[candidates].astype(np.float64)).T
    out = []
    for line in cos:
        best = np.argsort(-line, kind="stable")[:k]
        out.append([{"id": int(candidates[j]), "token": surfaces[int(candidates[j])], "cosine": round(float(line[j]), 4)}
                    for j in best])
    return out

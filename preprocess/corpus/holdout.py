"""Token-level hold-out: tokens whose pretrained rows the definition model never sees as targets.

The intrinsic test of DefinitionEMB (BERTRAM and Mimick evaluate the same way) holds
out tokens whose pretrained embeddings are good (the frequent and medium groups), trains the
definition model without them, predicts them from their definitions only and compares with the
true rows. What "without them" means here:

* **Every prompt with a held-out id in a headword span goes to the ``heldout`` split**, whether
  the id is the headword itself, another variant of it, or one piece of another word's variant.
  Span positions are targets, so training never regresses onto a held-out row; and the other
  variants of a held-out word ("Sediment" beside "sediment") never teach the model this
  definition either, since their rows are near copies of the held-out one.
* **Held-out ids inside the definitions of training prompts stay.** There they are inputs, not
  targets: the encoder reads the PLM's own input row, which it has whatever we do, and no loss
  pulls ``W h`` toward it. Replacing them would change the training text the paper's model sees.
* **At prediction every held-out id of a held-out prompt is masked**, not only the position being
  read (``definition_cloze`` does this for the ``heldout*`` splits): a copy of the token in its
  own definition would otherwise hand the encoder the very row it is asked for.
* ``heldout_defonly`` holds the same definitions with the other variants removed (the ablation
  "definition only"): ``<s>`` + the held-out variant + ``(pos; case): definition </s>``.

The corpus directory gets ``holdout_ids.txt`` (one id per line) and ``holdout.json`` (how the ids
were chosen, and per held-out prompt where its definition starts, for the description baseline).
"""
import json
from pathlib import Path

import numpy as np

from fairseq_defemb.analysis.frequency_groups import frequency_groups
from preprocess.corpus.prompts import Prompt
from preprocess.corpus.tokenizers import CorpusBuildError

HOLDOUT_IDS_FILE = "holdout_ids.txt"
HOLDOUT_FILE = "holdout.json"
HELDOUT_SPLIT = "heldout"
DEFINITION_ONLY_SPLIT = "heldout_defonly"
HOLDOUT_GROUPS = ("frequent", "medium")


class HoldoutError(CorpusBuildError):
    """A hold-out request that cannot be met; the message names the file, line and fix."""


def _groups(dictionary) -> dict[str, np.ndarray]:
    return frequency_groups(len(dictionary), dictionary.nspecial, dictionary.index("<mask>"))


def span_tokens(prompt: Prompt) -> set[int]:
    return {int(t) for s, e in prompt.spans for t in prompt.ids[s:e]}


def holdout_candidates(prompts: list[Prompt], dictionary) -> np.ndarray:
    """Frequent- and medium-group ids that spell a headword on their own: the first variant of
    some prompt (the headword as written, word-initial) is that single token. Tokens with a
    definition of their own, not pieces of longer words nor attached forms ("##m" of "M")."""
    own = {int(p.ids[p.spans[0][0]]) for p in prompts if p.spans[0][1] - p.spans[0][0] == 1}
    groups = _groups(dictionary)
    pool = np.concatenate([groups[g] for g in HOLDOUT_GROUPS])
    return np.sort(pool[np.isin(pool, np.fromiter(own, dtype=np.int64, count=len(own)))])


def sample_holdout(prompts: list[Prompt], dictionary, count: int, seed: int) -> np.ndarray:
    """``count`` candidates (``holdout_candidates``) drawn uniformly without replacement, seeded; sorted."""
    candidates = holdout_candidates(prompts, dictionary)
    if count > len(candidates):
        raise HoldoutError(
            f"--holdout {count}: only {len(candidates):,} tokens of the frequent and medium groups have a definition "
            f"of their own in this corpus (a prompt whose headword is that single token); ask for at most "
            f"{len(candidates):,}, or add a source (--source wiktionary,...)"
        )
    return np.sort(np.random.default_rng(seed).choice(candidates, size=count, replace=False))


def read_holdout_ids(path: str | Path, dictionary, prompts: list[Prompt]) -> np.ndarray:
    """``--holdout-ids``: one dictionary id per line (blank lines and ``#`` comments allowed); each
    must be a real symbol that occurs in some headword span, else an error naming the line."""
    path = Path(path)
    if not path.is_file():
        raise HoldoutError(f"--holdout-ids {path}: not found (one token id per line, e.g. a holdout_ids.txt)")
    defined = set().union(*(span_tokens(p) for p in prompts)) if prompts else set()
    mask = dictionary.index("<mask>")
    ids = []
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if not line.isdigit():
            raise HoldoutError(f"--holdout-ids {path}:{lineno}: '{line}' is not a token id (one integer per line)")
        token = int(line)
        if not dictionary.nspecial <= token < len(dictionary) or token == mask:
            raise HoldoutError(
                f"--holdout-ids {path}:{lineno}: id {token} is not a symbol of the dictionary (ids {dictionary.nspecial}"
                f"..{len(dictionary) - 1}, <mask> = {mask} excluded); was the file written for another dict.txt?"
            )
        if token not in defined:
            raise HoldoutError(
                f"--holdout-ids {path}:{lineno}: id {token} ('{dictionary[token]}') is in no headword variant of this "
                "corpus, so nothing could predict it; drop it or add a source that defines it"
            )
        ids.append(token)
    if not ids:
        raise HoldoutError(f"--holdout-ids {path}: no id in the file")
    return np.unique(np.asarray(ids, dtype=np.int64))


def split_off_heldout(prompts: list[Prompt], holdout: np.ndarray) -> tuple[list[Prompt], list[Prompt]]:
    """(prompts free of held-out targets, prompts with a held-out id in some span), in build order."""
    held = {int(t) for t in holdout}
    kept, heldout = [], []
    for p in prompts:
        (heldout if span_tokens(p) & held else kept).append(p)
    return kept, heldout


def variant_alone(prompt: Prompt, span: int) -> Prompt:
    """``prompt`` with only its variant ``span``: ``<s>`` + that variant + the header and
    definition, the other variants (the word's spelling in other forms) removed."""
    s, e = prompt.spans[span]
    ids = list(prompt.ids)
    shift = 1 + (e - s) - prompt.header_start
    return Prompt(np.asarray([ids[0], *ids[s:e], *ids[prompt.header_start:]], dtype=np.int32), [(1, 1 + e - s)],
                  prompt.source, prompt.header_start + shift, prompt.definition_start + shift, prompt.generic)


def definition_only(prompt: Prompt, holdout: np.ndarray) -> list[Prompt]:
    """The ablation's prompts: one per distinct variant of ``prompt`` holding a held-out id,
    ``<s>`` + that variant + the header and definition, the other variants removed."""
    held = {int(t) for t in holdout}
    out, seen = [], set()
    for k, (s, e) in enumerate(prompt.spans):
        variant = tuple(int(t) for t in prompt.ids[s:e])
        if variant in seen or not held & set(variant):
            continue
        seen.add(variant)
        out.append(variant_alone(prompt, k))
    return out


def holdout_splits(prompts: list[Prompt], holdout: np.ndarray) -> tuple[list[Prompt], dict[str, list[Prompt]]]:
    """(the prompts training may use, the ``heldout`` and ``heldout_defonly`` splits)."""
    kept, heldout = split_off_heldout(prompts, holdout)
    defonly = [q for p in heldout for q in definition_only(p, holdout)]
    return kept, {HELDOUT_SPLIT: heldout, DEFINITION_ONLY_SPLIT: defonly}


def holdout_metadata(holdout: np.ndarray, dictionary, splits: dict[str, list[Prompt]], chosen_by: str,
                     seed: int) -> dict:
    """What ``holdout.json`` records: the ids and their groups, how they were chosen, and where
    each held-out prompt's definition starts (for the description-init baseline)."""
    groups = _groups(dictionary)
    return {
        "ids": [int(t) for t in holdout],
        "tokens": [dictionary[int(t)] for t in holdout],
        "chosen_by": chosen_by,
        "seed": seed,
        "groups": {g: int(np.isin(holdout, groups[g]).sum()) for g in ("frequent", "medium", "rare")},
        "prompts": {name: len(rows) for name, rows in splits.items()},
        "definition_start": {name: [int(p.definition_start) for p in rows] for name, rows in splits.items()},
    }


def write_holdout(out_dir: Path, metadata: dict) -> None:
    (out_dir / HOLDOUT_IDS_FILE).write_text("".join(f"{i}\n" for i in metadata["ids"]))
    (out_dir / HOLDOUT_FILE).write_text(json.dumps(metadata, indent=1) + "\n")


def load_holdout(corpus_dir: str | Path) -> dict | None:
    """``holdout.json`` of a corpus built with a hold-out, else None."""
    path = Path(corpus_dir) / HOLDOUT_FILE
    return json.loads(path.read_text()) if path.is_file() else None

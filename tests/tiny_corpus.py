"""A small definition corpus over the tiny dictionary, written in the real corpus format.

Independent of the corpus builder, so the plugin's tests do not depend on it.
"""
import random
import shutil
from pathlib import Path

from fairseq_defemb.data.corpus_format import CorpusWriter, write_metadata
from fairseq_defemb.data.vocabulary import load_model_dictionary

# headword -> definition, all in the tiny dictionary's words.
DEFINITIONS = {
    "cat": "a small animal",
    "dog": "an animal kind",
    "owl": "a bird of the night",
    "bee": "a small animal with song",
    "sun": "the star of the sea and hill",
    "moon": "a light at the night",
    "zebu": "a kind of cow",
    "quagga": "a kind of zebu animal",
    "okapi": "an animal of the tree",
    "dugong": "a fish animal of the sea",
    "emu": "a large bird",
    "gnu": "a large animal",
    "yak": "a cow with cloth",
    "elk": "a large animal of the hill",
    "fox": "a small animal",
    "river": "water that is a road",
}


def prompt_and_spans(dictionary, word: str, definition: str, variants: int = 2):
    """``<s> word : word : definition </s>``, the headword twice (two variant slots)."""
    ids, spans = [dictionary.bos()], []
    for _ in range(variants):
        spans.append((len(ids), len(ids) + 1))
        ids += [dictionary.index(word), dictionary.index(":") if ":" in dictionary.indices else dictionary.index("is")]
    ids += [dictionary.index(w) for w in definition.split()] + [dictionary.eos()]
    return ids, spans


def make_tiny_corpus(out_dir: str | Path, dict_path: str | Path, valid: int = 4, copies: int = 4, seed: int = 0,
                     definitions: dict[str, str] = DEFINITIONS, variants: tuple[int, ...] = (2,)) -> Path:
    """Each (word, definition) ``copies`` times, shuffled; the i-th prompt of a split holds the
    headword ``variants[i % len(variants)]`` times."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(dict_path, out / "dict.txt")
    dictionary = load_model_dictionary(out / "dict.txt")
    entries = [(w, d) for w, d in definitions.items()] * copies
    random.Random(seed).shuffle(entries)
    splits = {"valid": entries[:valid], "train": entries[valid:]}
    for split, rows in splits.items():
        writer = CorpusWriter(out, split, len(dictionary))
        for i, (word, definition) in enumerate(rows):
            writer.add(*prompt_and_spans(dictionary, word, definition, variants[i % len(variants)]))
        writer.finalize()
    write_metadata(out, out / "dict.txt", {k: len(v) for k, v in splits.items()}, source="tests/tiny_corpus.py")
    return out

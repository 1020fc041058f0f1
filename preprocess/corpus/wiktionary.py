"""Wiktionary in the kaikki.org / wiktextract JSONL format (the paper's source), streamed.

One JSON object per line: ``{"word": ..., "pos": ..., "lang_code": "en", "senses":
[{"glosses": [...]}, ...]}``. A sense's ``glosses`` run from its parent sense's gloss to
its own, so the last one is the sense's definition; one entry per distinct (word, pos,
gloss). Records of another language (``lang_code`` other than "en", as in the
all-languages dump), lines that are not JSON objects, records without a word or without
any gloss, invalid UTF-8 and lines over 1 MiB are skipped and counted. ``.gz`` is read
as is.
"""
import json
from pathlib import Path
from typing import Iterator

from preprocess.corpus.entries import Entry, SkipLog, numbered_lines


def read_wiktionary(path: str | Path, skips: SkipLog | None = None, lang_code: str = "en") -> Iterator[Entry]:
    skips = skips if skips is not None else SkipLog()
    for where, line in numbered_lines(path, "--wiktionary-jsonl", "a kaikki.org English JSONL dump", skips):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            word, pos, senses = record["word"], record.get("pos") or "", record.get("senses") or []
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            skips.skip("malformed JSON record", where)
            continue
        if not isinstance(word, str) or not word.strip() or "\n" in word:
            skips.skip("malformed JSON record", where)
            continue
        if record.get("lang_code", lang_code) != lang_code:
            skips.skip("other language", where)
            continue
        seen = set()
        for sense in senses if isinstance(senses, list) else []:
            glosses = sense.get("glosses") if isinstance(sense, dict) else None
            if not isinstance(glosses, list):
                continue
            glosses = [g.strip() for g in glosses if isinstance(g, str) and g.strip()]
            if glosses and glosses[-1] not in seen:
                seen.add(glosses[-1])
                yield Entry(word.strip(), str(pos), " ".join(glosses[-1].split()), "wiktionary")
        if not seen:
            skips.skip("no definition", where)

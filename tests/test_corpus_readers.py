"""defemb-corpus sources: GCIDE, Wiktionary JSONL, numbers, manual TSV."""
import gzip
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from preprocess.corpus.entries import MAX_LINE_BYTES, Entry, SkipLog
from preprocess.corpus.gcide import clean_definition, clean_headword, gcide_files, read_gcide
from preprocess.corpus.manual import read_manual
from preprocess.corpus.numbers import number_entries, spell_number
from preprocess.corpus.wiktionary import read_wiktionary


# -- GCIDE ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gcide():
    skips = SkipLog()
    return list(read_gcide(skips=skips)), skips


def test_gcide_files_come_from_the_installed_package():
    files = gcide_files()
    assert len(files) == 26 and all(f.parent.parts[-3:] == ("dictionary", "data", "en") for f in files)


def test_gcide_real_package_is_read_whole_and_clean(gcide):
    entries, skips = gcide
    assert len({e.word.lower() for e in entries}) > 100_000 and len(entries) > 170_000
    for marker in ("[1913 Webster]", "[Webster 1913", "[PJC]", "<--", "-->", "{2}", "{1b}"):
        assert not any(marker in e.definition for e in entries), marker
    assert not any(re.search(r"\w[*`]\w", e.definition) for e in entries)  # syllable marks of run-on forms
    assert all(e.definition and e.definition == e.definition.strip() and "\n" not in e.word for e in entries)
    sediment = [e for e in entries if e.word == "sediment"]
    assert sediment[0].pos == "n." and sediment[0].definition.startswith("The matter which subsides")
    # Garbled records of the package (a raw entry as the headword) are skipped and counted.
    assert 0 < skips.counts["garbled headword"] < 200 and skips.counts.get("malformed record", 0) == 0


def test_gcide_proper_nouns_get_their_capital_back(gcide):
    entries, _ = gcide
    by_word = {(e.word, e.pos) for e in entries}
    assert ("Abidjan", "prop. n.") in by_word and ("abidjan", "prop. n.") not in by_word
    assert ("Abu Dhabi", "prop. n.") in by_word


def test_clean_definition_strips_markup():
    raw = ("A measure of liquids.<-- p. 26 --> [1913 Webster] {2} [Obs.] see cap{1b}; -- Af*flict\"ing*ly, adv.\n"
           "[Webster 1913 Suppl. +PJC]")
    assert clean_definition(raw) == "A measure of liquids. see cap; -- Afflictingly, adv."
    assert clean_definition("[1913 Webster]") == ""


def test_clean_headword():
    assert clean_headword("gon\"iff", "n.") == "goniff"
    assert clean_headword("a\na\" (?), n. [a + club.]", "n.") is None
    assert clean_headword("abu dhabi", "prop. n.") == "Abu Dhabi"
    assert clean_headword("24/7", "adv.") == "24/7"


def test_gcide_bad_files_and_records_are_skipped(tmp_path):
    good = tmp_path / "words_A.json"
    good.write_text(json.dumps({
        "abc": {"entry": "abc", "pos": [{"part_of_speech": "n.", "definitions": [{"text": "letters [1913 Webster]"},
                                                                                {"text": " [PJC] "}]}]},
        "bad": {"entry": "bad", "pos": "not a list of dicts"},
    }))
    broken = tmp_path / "words_B.json"
    broken.write_bytes(b"{\"b\": \xff")
    skips = SkipLog()
    assert list(read_gcide([good, broken], skips)) == [Entry("abc", "n.", "letters", "gcide")]
    assert skips.counts == {"empty definition": 1, "malformed record": 1, "unreadable file": 1}


# -- Wiktionary -------------------------------------------------------------------

def write_jsonl(path, records: list) -> None:
    path.write_bytes(b"\n".join(r if isinstance(r, bytes) else json.dumps(r).encode() for r in records) + b"\n")


def test_wiktionary_streams_senses_and_counts_bad_lines(tmp_path):
    path = tmp_path / "wikt.jsonl"
    write_jsonl(path, [
        {"word": "sediment", "pos": "noun", "lang_code": "en", "senses": [
            {"glosses": ["material that settles"]},
            {"glosses": ["material that settles", "dregs of wine"]},  # subsense: parent gloss first
            {"glosses": ["dregs of wine"]},  # duplicate gloss
            {"tags": ["no-gloss"]}]},
        b"{not json",
        {"word": "x", "senses": []},
        b'{"word": "caf\xe9", "senses": [{"glosses": ["a"]}]}',
        {"word": "big", "pos": "adj", "senses": [{"glosses": ["y" * (MAX_LINE_BYTES + 10)]}]},
        {"word": "Hund", "pos": "noun", "lang_code": "de", "senses": [{"glosses": ["dog"]}]},
        [1, 2],
        {"word": 3, "senses": [{"glosses": ["three"]}]},
        b"",
        {"word": "NVIDIA", "pos": "name", "senses": [{"glosses": ["  an American\ncompany "]}]},
    ])
    skips = SkipLog()
    entries = list(read_wiktionary(path, skips))
    assert [(e.word, e.pos, e.definition) for e in entries] == [
        ("sediment", "noun", "material that settles"), ("sediment", "noun", "dregs of wine"),
        ("NVIDIA", "name", "an American company")]
    assert skips.counts == {"malformed JSON record": 3, "no definition": 1, "invalid UTF-8": 1, "line too long": 1,
                            "other language": 1}
    assert skips.examples["malformed JSON record"] == [f"{path}:2", f"{path}:7", f"{path}:8"]
    assert skips.examples["line too long"] == [f"{path}:5"]


def test_wiktionary_reads_gzip(tmp_path):
    path = tmp_path / "wikt.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write(json.dumps({"word": "sediment", "pos": "noun", "senses": [{"glosses": ["dregs"]}]}) + "\n")
    assert [e.definition for e in read_wiktionary(path)] == ["dregs"]


def test_wiktionary_missing_file():
    with pytest.raises(FileNotFoundError, match="--wiktionary-jsonl"):
        list(read_wiktionary("/nonexistent/k.jsonl"))


# -- manual TSV -------------------------------------------------------------------

def test_manual_tsv_skips_bad_lines(tmp_path):
    path = tmp_path / "ne.tsv"
    path.write_bytes("NVIDIA\tproper noun\tan American technology company\n# comment\n\nbad line\n\tn\tno token\n"
                     "x\tn\t   \n".encode() + b"caf\xe9\tn\tcoffee\n" + "Obama\t\ta US president\r\n".encode())
    skips = SkipLog()
    assert list(read_manual(path, skips)) == [Entry("NVIDIA", "proper noun", "an American technology company", "manual"),
                                             Entry("Obama", "", "a US president", "manual")]
    assert skips.counts == {"not token<TAB>pos<TAB>definition": 3, "invalid UTF-8": 1}
    assert skips.examples["not token<TAB>pos<TAB>definition"] == [f"{path}:4", f"{path}:5", f"{path}:6"]


# -- numbers ----------------------------------------------------------------------

@pytest.mark.parametrize("digits,words", [
    ("0", "zero"), ("2", "two"), ("13", "thirteen"), ("40", "forty"), ("99", "ninety-nine"), ("100", "one hundred"),
    ("101", "one hundred one"), ("1999", "one thousand nine hundred ninety-nine"), ("2000000", "two million"),
    ("1000001", "one million one"), ("02", "zero two"), ("007", "zero zero seven"),
    ("1" * 16, " ".join(["one"] * 16)),
])
def test_spell_number(digits, words):
    assert spell_number(digits) == words


def test_spell_number_rejects_non_digits():
    for bad in ("", "1.5", "1,000", "-3", "１２", "x"):
        with pytest.raises(ValueError):
            spell_number(bad)


UNITS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve thirteen "
                                    "fourteen fifteen sixteen seventeen eighteen nineteen".split())}
UNITS.update({w: 10 * i for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split(), 2)})
SCALES = {"thousand": 10**3, "million": 10**6, "billion": 10**9, "trillion": 10**12}


def parse_number(words: str) -> int:
    """An independent reader of English cardinals, to check spell_number against."""
    total = group = 0
    for word in words.split():
        if word == "hundred":
            group *= 100
        elif word in SCALES:
            total, group = total + group * SCALES[word], 0
        else:
            group += sum(UNITS[part] for part in word.split("-"))
    return total + group


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=10**15 - 1))
def test_spelled_numbers_read_back(n):
    words = spell_number(str(n))
    assert parse_number(words) == n
    assert "  " not in words and not words.startswith(" ") and "zero" not in words.replace("zero", "", n == 0)


def test_number_entries_only_digit_tokens():
    entries = list(number_entries(["12", "a1", "12", "007", "１２", "1,000", "3.5", ""]))
    assert [(e.word, e.pos, e.definition) for e in entries] == [
        ("007", "numeral", "the number zero zero seven"), ("12", "numeral", "the number twelve")]

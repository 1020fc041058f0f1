"""defemb-corpus sources: GCIDE, Wiktionary JSONL, numbers, manual TSV (both layouts)."""
import gzip
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from preprocess.corpus.entries import MAX_LINE_BYTES, Entry, SkipLog
from preprocess.corpus.gcide import clean_definition, clean_headword, gcide_files, read_gcide
from preprocess.corpus.manual import (BAD_INDEX, EMPTY_ROW, INDEX_DISAGREES, NOT_IN_VOCABULARY, NOT_SYMBOLS, NOT_WORDS,
                                      SPECIAL, read_manual)
from preprocess.corpus.numbers import number_entries, spell_number
from preprocess.corpus.tokenizers import CorpusBuildError, SentencePieceBackend
from preprocess.corpus.wiktionary import read_wiktionary
from fairseq_defemb.data.vocabulary import load_model_dictionary
from test_corpus_alignment import gpt2, sentencepiece_model, wordpiece  # noqa: F401  (module fixtures)


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


AUTHORS_HEADER = "index\ttoken\tpos\tdefinition\n"


def test_authors_layout_grounds_exactly_the_named_gpt2_symbols(tmp_path, gpt2):  # noqa: F811
    """The layout of the paper authors' manual_definitions.txt for BART, with the mess of their
    real file: symbols as encoder.json writes them, two senses of one token, an all-empty row,
    a token column of two words, a token with a trailing space and a definition with a leading one."""
    enc, d = gpt2.bpe.encoder, gpt2.dictionary
    assert enc["2000"] != 2000  # the digit token "2000" and the id 2000 are two tokens
    path = tmp_path / "manual_definitions.txt"
    path.write_text(AUTHORS_HEADER + "".join(f"{line}\n" for line in [
        f"{enc['ĠiTunes']}\tĠiTunes\tproper noun\ta media player and media library",   # 2
        f"{enc['taboola']}\ttaboola\tproper noun\tan advertising company",                        # 3: no leading space
        f"{enc['mA']}\tmA\tsymbol\t(metrology) symbol for milliampere",                          # 4: two senses
        f"{enc['mA']}\tmA\tsymbol\t(biochemistry) methyladenine",                                # 5
        "\t\t\t",                                                                                  # 6: empty row
        f"{enc['ulkan']}\tulkan Ulkan\tproper noun\tan urban locality in Russia",                 # 7: two words
        f"{enc['ĠGHz']}\tĠGHz \tsymbol\t (metrology) symbol for gigahertz",             # 8: spaces
        f"{enc['GHz']}\tĠGHz\tsymbol\ta unit of frequency",                                 # 9: index of "GHz"
        "7\tĠQqxzzy\tproper noun\tno such GPT-2 symbol",                                     # 10
        "x12\tĠGeForce\tproper noun\ta brand of graphics processors",                       # 11: bad index
        f"\t{enc['ĠNVIDIA']}\tproper noun\ta technology company",                             # 12: the raw id
        f"{enc['2000']}\t2000\tnumeral\tthe year two thousand",                                   # 13: the symbol "2000"
        "2000\t2000\tnoun\tthe id 2000 written in decimal",                                       # 14: the id 2000
        "5\tĠfoo\tnoun",                                                                      # 15: three fields
    ]))
    skips = SkipLog()
    entries = list(read_manual(path, skips, backend=gpt2))
    named = ["ĠiTunes", "taboola", "mA", "mA", "ĠGHz", "ĠGHz", "ĠNVIDIA", "2000", gpt2.bpe.decoder[2000]]
    assert [e.token_id for e in entries] == [d.index(str(enc[symbol])) for symbol in named]
    assert [e.word for e in entries] == ["iTunes", "taboola", "mA", "mA", "GHz", "GHz", "NVIDIA", "2000", "mind"]
    assert entries[4].definition == "(metrology) symbol for gigahertz" and {e.source for e in entries} == {"manual"}
    assert skips.as_dict() == {
        EMPTY_ROW: {"count": 1, "first": [f"{path}:6"]},
        NOT_IN_VOCABULARY: {"count": 2, "first": [f"{path}:7", f"{path}:10"]},
        INDEX_DISAGREES: {"count": 1, "first": [f"{path}:9"]},  # the line is kept, with the symbol's id
        BAD_INDEX: {"count": 1, "first": [f"{path}:11"]},
        NOT_SYMBOLS: {"count": 1, "first": [f"{path}:15"]},
    }


def test_authors_layout_with_sentencepiece_pieces(tmp_path, sentencepiece_model):  # noqa: F811
    """The layout of the authors' T5 file: "▁" pieces, ids of the sentencepiece model (not of dict.txt)."""
    import sentencepiece

    model, dict_path = sentencepiece_model
    backend = SentencePieceBackend(load_model_dictionary(dict_path), model)
    sp = sentencepiece.SentencePieceProcessor(model_file=str(model))
    pieces = [sp.id_to_piece(i) for i in range(3, sp.get_piece_size())]
    initial = next(p for p in pieces if p.startswith("▁") and p[1:].isalpha() and len(p) > 4)
    attached = next(p for p in pieces if p.isalpha() and len(p) > 2)
    path = tmp_path / "manual_definitions.txt"
    path.write_text(AUTHORS_HEADER + f"{sp.piece_to_id(initial)}\t{initial} \tnoun\t a word of the test\n"
                    f"{sp.piece_to_id(attached)}\t{attached}\tproper noun\tthe ending part of a name\n"
                    "\t\t\t\n"
                    f"{sp.piece_to_id(attached)}\t{initial}\tnoun\tanother sense\n"
                    "0\t<unk>\tnoun\tthe unknown piece\n"
                    "31568\t▁Juventus\tproper noun\ta football club\n")
    skips = SkipLog()
    entries = list(read_manual(path, skips, backend=backend))
    d = backend.dictionary
    assert [(e.token_id, e.word) for e in entries] == [(d.index(initial), initial[1:]), (d.index(attached), attached),
                                                       (d.index(initial), initial[1:])]
    assert d.index(initial) != sp.piece_to_id(initial)  # the index is the tokenizer's id, not dict.txt's
    assert {k: v["first"] for k, v in skips.as_dict().items()} == {
        EMPTY_ROW: [f"{path}:4"], INDEX_DISAGREES: [f"{path}:5"], SPECIAL: [f"{path}:6"], NOT_IN_VOCABULARY: [f"{path}:7"]}


def test_manual_layout_from_the_header_or_as_told(tmp_path, gpt2, wordpiece):  # noqa: F811
    enc, d = gpt2.bpe.encoder, gpt2.dictionary
    words = tmp_path / "words.tsv"
    # without the header: words, except a token with the tokenizer's symbol mark
    words.write_text("NVIDIA\tproper noun\ta technology company\nĠGeForce\tproper noun\ta brand of GPUs\n"
                     "ĠQqxzzy\tnoun\tnot a symbol\n")
    skips = SkipLog()
    assert list(read_manual(words, skips, backend=gpt2)) == [
        Entry("NVIDIA", "proper noun", "a technology company", "manual"),
        Entry("GeForce", "proper noun", "a brand of GPUs", "manual", cased=False,
              token_id=d.index(str(enc["ĠGeForce"])))]
    assert skips.examples == {NOT_IN_VOCABULARY: [f"{words}:3"]}
    authors = tmp_path / "authors.tsv"
    authors.write_text("\ufeff" + AUTHORS_HEADER + f"{enc['taboola']}\ttaboola\tproper noun\tan advertising company\n")
    assert [e.token_id for e in read_manual(authors, backend=gpt2)] == [d.index(str(enc["taboola"]))]
    skips = SkipLog()  # told it is the other layout, the header and the line are malformed
    assert list(read_manual(authors, skips, layout="token-pos-definition", backend=gpt2)) == []
    assert skips.counts == {NOT_WORDS: 2}
    headerless = tmp_path / "headerless.tsv"
    headerless.write_text(f"{enc['taboola']}\ttaboola\tproper noun\tan advertising company\n")
    assert [e.word for e in read_manual(headerless, backend=gpt2, layout="index-token-pos-definition")] == ["taboola"]
    # WordPiece: the index is vocab.txt's line number; "##" marks a continuation piece
    continuation = wordpiece.pieces.index("##ness")
    (tmp_path / "wp.tsv").write_text(AUTHORS_HEADER + f"{continuation}\t##ness\tsuffix\tthe state of being\n")
    assert [e.token_id for e in read_manual(tmp_path / "wp.tsv", backend=wordpiece)] == [wordpiece.dictionary.index("##ness")]
    with pytest.raises(CorpusBuildError, match="names vocabulary symbols"):
        list(read_manual(authors))
    with pytest.raises(CorpusBuildError, match="--manual-format tsv: unknown"):
        list(read_manual(authors, layout="tsv", backend=gpt2))


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

"""The embedded coverage sources of defemb-corpus and their licences:
inflections, names and places, symbols, affixes; the source registry; coverage by shape."""
import json
import random
import re

import pytest
from lemminflect import getAllLemmas

from preprocess.corpus.affixes import affix_entries
from preprocess.corpus.coverage import token_shape
from preprocess.corpus.entries import Entry, SkipLog
from preprocess.corpus.gcide import read_gcide
from preprocess.corpus.inflections import LemmaIndex, form_of, inflection_entries, upos_of
from preprocess.corpus.names import (read_census_names, read_countries, read_geonames, read_names, read_subdivisions,
                                 country_names)
from preprocess.corpus.prompts import build_prompt
from preprocess.corpus.sources import DEFAULT_SOURCES, SOURCES, licences, parse_sources, round_trips
from preprocess.corpus.symbols import describe_character, symbol_entries, symbol_entry
from preprocess.corpus.tokenizers import CorpusBuildError
from test_corpus_alignment import gpt2, wordpiece  # noqa: F401  (module fixtures: the real GPT-2 BPE and MiniLM vocab)


@pytest.fixture(scope="module")
def gcide_entries():
    return list(read_gcide())


# -- registry and licences --------------------------------------------------------

def test_every_source_has_a_licence_entry():
    from fairseq_defemb.cli.corpus import build_parser

    offered = next(a for a in build_parser()._actions if a.dest == "source")
    names = re.search(r"comma-separated: (.*?) \(default", offered.help)[1].split(", ")
    assert set(names) == set(SOURCES) == {"gcide", "wiktionary", "numbers", "manual", "inflections", "names", "symbols",
                                          "affixes"}
    for name, record in licences(list(SOURCES)).items():
        assert set(record) == {"data", "licence", "where"} and all(v.strip() for v in record.values()), name
    assert "GPL" in SOURCES["gcide"].licence and "CC BY-SA" in SOURCES["wiktionary"].licence


def test_default_is_every_embedded_source_and_inflections_run_last():
    assert DEFAULT_SOURCES == ("gcide", "numbers", "inflections", "names", "symbols", "affixes")
    assert parse_sources(DEFAULT_SOURCES)[-1] == "inflections"
    assert parse_sources(["inflections", " gcide", "gcide"]) == ["gcide", "inflections"]
    with pytest.raises(CorpusBuildError, match="webster: unknown"):
        parse_sources(["gcide", "webster"])
    with pytest.raises(CorpusBuildError, match="add one of gcide"):
        parse_sources(["inflections", "numbers"])
    with pytest.raises(CorpusBuildError, match="empty"):
        parse_sources([" "])


# -- inflections ------------------------------------------------------------------

def test_upos_of_dictionary_labels():
    assert upos_of("n.") == ["NOUN"] and upos_of("v. t. & i.") == ["VERB"] and upos_of("a. & n.") == ["NOUN", "ADJ"]
    assert upos_of("adv.") == ["ADV"] and upos_of("noun") == ["NOUN"] and upos_of("verb") == ["VERB"]
    for label in ("n. pl.", "prop. n.", "p. p.", "pron.", "prep.", "v. t. . [imp. did (d; p. p. done (d; p. pr."):
        assert upos_of(label) == [], label
    assert form_of(["VBD", "VBN"]) == "simple past and past participle"


def test_form_of_entries_repeat_the_lemma_definition():
    index = LemmaIndex()
    for entry in [Entry("thing", "n.", "Whatever exists.", "gcide"), Entry("thing", "n.", "A second sense.", "gcide"),
                  Entry("say", "v. t.", "To utter.", "gcide"), Entry("call", "v. t.", "To name.", "gcide"),
                  Entry("big", "a.", "Large.", "gcide"), Entry("Thing", "n.", "capitalized: no lemma", "gcide"),
                  Entry("zzyzxq", "n.", "not in the table", "gcide"),
                  Entry("Iraqi", "demonym", "a native or inhabitant of Iraq", "names")]:
        index.offer(entry)
    skips = SkipLog()
    got = {(e.word, e.pos, e.definition) for e in inflection_entries(index, skips)}
    assert ("things", "noun", "plural of thing: Whatever exists.") in got
    assert ("says", "verb", "third-person singular simple present of say: To utter.") in got
    assert ("said", "verb", "simple past and past participle of say: To utter.") in got
    # the table leaves a regular verb's participle empty: it is the simple past
    assert ("called", "verb", "simple past and past participle of call: To name.") in got
    assert ("bigger", "adj.", "comparative of big: Large.") in got and ("biggest", "adj.", "superlative of big: Large.") in got
    assert ("Iraqis", "noun", "plural of Iraqi: a native or inhabitant of Iraq") in got
    assert not any(word in ("thing", "say", "big") for word, _, _ in got)  # the lemma itself is no form of itself
    assert skips.counts == {"lemma not in lemminflect's table": 1}


def test_form_of_prompts_match_the_lemma_entry(gcide_entries, gpt2):  # noqa: F811
    """A sample of real inflections: the form is an inflection of the lemma (lemminflect's own
    lemmatizer agrees), the lemma has a GCIDE entry of that part of speech, and the prompt's
    text repeats that entry's definition after "... of LEMMA:"."""
    index = LemmaIndex()
    for entry in gcide_entries:
        index.offer(entry)
    entries = list(inflection_entries(index))
    assert len(entries) > 25_000
    definitions: dict[tuple[str, str], list[str]] = {}
    for e in gcide_entries:
        for tag in upos_of(e.pos):
            definitions.setdefault((e.word, tag), []).append(e.definition)
    tags = {"noun": "NOUN", "verb": "VERB", "adj.": "ADJ", "adv.": "ADV"}
    for entry in random.Random(0).sample(entries, 300):
        match = re.fullmatch(r"([a-z -]+) of ([a-z-]+): (.+)", entry.definition)
        assert match, entry
        label, lemma, definition = match.groups()
        tag = tags[entry.pos]
        assert definition == definitions[(lemma, tag)][0], entry  # the lemma's own first sense of that POS
        assert lemma in getAllLemmas(entry.word, upos=tag).get(tag, ()) or label.startswith(("past", "simple past")), entry
        prompt = build_prompt(entry, gpt2, 4096, SkipLog())
        assert prompt is not None and f" of {lemma}: {definition}" in gpt2.decode(prompt.ids)


# -- names and places ----------------------------------------------------------------

@pytest.fixture
def place_files(tmp_path):
    info = tmp_path / "countryinfo"
    info.mkdir()
    (info / "iraq.json").write_text(json.dumps({"name": "Iraq", "ISO": {"alpha2": "IQ", "alpha3": "IRQ"}, "capital": "Baghdad",
                                                "region": "Asia", "subregion": "Western Asia", "demonym": "Iraqi",
                                                "population": 36004552}))
    (info / "us.json").write_text(json.dumps({"name": "United States", "ISO": {"alpha2": "US"}, "subregion": "Northern America",
                                              "capital": "Washington D.C.", "demonym": "American", "population": 3e8}))
    (info / "mp.json").write_text(json.dumps({"name": "Northern Mariana Islands", "ISO": {"alpha2": "MP"},
                                              "demonym": "American", "population": 53883}))
    (info / "ba.json").write_text(json.dumps({"name": "Bosnia", "ISO": {"alpha2": "BA"}, "demonym": "Bosnian,Herzegovinian"}))
    (info / "broken.json").write_bytes(b"{\"name\": \xff")
    (info / "noiso.json").write_text(json.dumps({"name": "Nowhere"}))
    iso1 = tmp_path / "iso3166-1.json"
    iso1.write_text(json.dumps({"3166-1": [
        {"alpha_2": "IQ", "alpha_3": "IRQ", "name": "Iraq", "official_name": "Republic of Iraq"},
        {"alpha_2": "US", "alpha_3": "USA", "name": "United States"}, "not a record"]}))
    iso2 = tmp_path / "iso3166-2.json"
    iso2.write_text(json.dumps({"3166-2": [{"code": "US-TX", "name": "Texas", "type": "State"},
                                           {"code": "IQ-BG", "name": "Baghdad", "type": "Governorate"},
                                           {"code": "XX-1", "name": "Nowhere", "type": "State"}, {"name": "no code"}]}))
    geo = tmp_path / "geonames"
    geo.mkdir()
    (geo / "continents.json").write_text(json.dumps({"AS": {"name": "Asia"}, "XX": []}))
    (geo / "us_states.json").write_text(json.dumps({"TX": {"code": "TX", "name": "Texas"}}))
    (geo / "cities15000.json").write_text(json.dumps({
        "1": {"name": "Houston", "countrycode": "US", "admin1code": "TX", "population": 2296224},
        "2": {"name": "Baghdad", "countrycode": "IQ", "admin1code": "07", "population": 5672513},
        "3": {"name": "Lost", "countrycode": "ZZ", "population": 1}, "4": {"countrycode": "US"}}))
    return info, iso1, iso2, geo


def test_places_from_package_files(place_files):
    info, iso1, iso2, geo = place_files
    skips = SkipLog()
    names, infos, iso_records = country_names(iso1, info, skips)
    got = {(e.word, e.pos, e.definition) for e in [*read_countries(names, infos, iso_records, skips), *read_subdivisions(names, iso2, skips),
                                                     *read_geonames(names, geo, skips)]}
    assert ("Iraq", "prop. n.", "a country in Western Asia; capital Baghdad") in got
    assert ("Iraqi", "demonym", "a native or inhabitant of Iraq; of or relating to Iraq") in got
    # a shared demonym names the most populous territory
    assert ("American", "demonym", "a native or inhabitant of the United States; of or relating to the United States") in got
    assert ("Republic of Iraq", "prop. n.", "a name of Iraq") in got and ("IRQ", "abbr.", "the ISO 3166-1 code of Iraq") in got
    assert ("Texas", "prop. n.", "a state of the United States") in got
    assert ("Baghdad", "prop. n.", "a governorate of Iraq") in got
    assert ("Houston", "prop. n.", "a city in Texas, the United States; population 2,296,224") in got
    assert ("Baghdad", "prop. n.", "a city in Iraq; population 5,672,513") in got
    assert ("Asia", "prop. n.", "a continent") in got
    assert ("TX", "abbr.", "the postal abbreviation of Texas, a state of the United States") in got
    assert skips.counts == {"unreadable file": 1, "malformed record": 7, "unusable demonym": 1}


def test_census_names_are_generic_and_bad_lines_counted(tmp_path):
    male, female, last = tmp_path / "m", tmp_path / "f", tmp_path / "l"
    male.write_text("JAMES          3.318  3.318      1\nMARY           0.001  90.000      2\n")
    female.write_text("MARY           2.629  2.629      1\nthis line is broken\n")
    last.write_bytes(b"SMITH          1.006  1.006      1\n\xff\xfe 1 2 3\n")
    skips = SkipLog()
    got = list(read_census_names({"male": male, "female": female, "surname": last}, skips))
    assert all(e.generic and not e.cased for e in got)
    assert {(e.word, e.definition) for e in got} == {
        ("James", "a given name (male: rank 1 of 2 in the 1990 US census)"),
        ("Mary", "a given name (male: rank 2 of 2; female: rank 1 of 1 in the 1990 US census)"),
        ("Smith", "a surname (rank 1 of 1 in the 1990 US census)")}
    assert skips.counts == {"malformed line": 1, "invalid UTF-8": 1}


def test_names_from_the_installed_packages():
    skips = SkipLog()
    entries = list(read_names(skips))
    by_word: dict[str, list[Entry]] = {}
    for e in entries:
        by_word.setdefault(e.word, []).append(e)
    assert len(entries) > 100_000 and all(e.source == "names" and not e.cased for e in entries)
    assert any(e.definition == "a country in Western Asia; capital Baghdad" for e in by_word["Iraq"])
    assert any(e.definition == "a state of the United States" for e in by_word["Texas"])
    assert any(e.pos == "demonym" and "United States" in e.definition for e in by_word["American"])
    assert any(e.definition == "a continent" for e in by_word["Europe"])
    assert all(e.generic == (e.pos in ("given name", "surname")) for e in entries)
    assert sum(skips.counts.values()) < 100  # a few records of the packages lack a field


# -- symbols ------------------------------------------------------------------------

def test_symbols_are_named_by_unicode():
    assert describe_character("!") == "exclamation mark, a punctuation mark (U+0021)"
    assert describe_character("\n") is None
    assert symbol_entry("é") == Entry("é", "letter", "latin small letter e with acute, a lower-case letter (U+00E9)",
                                      "symbols", cased=False)
    assert symbol_entry("...").definition == "a sequence of: full stop (3 times)"
    assert symbol_entry(").").definition == "a sequence of: right parenthesis, full stop"
    for not_a_symbol in ("abc", "x!", "42", "日本", "", "a\u0301"):
        assert symbol_entry(not_a_symbol) is None, not_a_symbol
    skips = SkipLog()
    assert [e.word for e in symbol_entries(["!", "!", "word", "\x07", "\ue000", "$"], skips)] == ["!", "$"]
    assert skips.counts == {"character without a Unicode name": 2}


def test_symbols_that_a_tokenizer_normalizes_are_dropped(gpt2, wordpiece):  # noqa: F811
    accented = symbol_entry("é")
    assert round_trips(gpt2, accented) and round_trips(gpt2, symbol_entry("!"))
    # an uncased WordPiece model strips the accent: "e" must not get the definition of "é"
    assert not round_trips(wordpiece, accented) and round_trips(wordpiece, symbol_entry("!"))


# -- affixes ------------------------------------------------------------------------

def test_affixes_only_in_the_form_they_take_inside_a_word(gpt2, wordpiece):  # noqa: F811
    skips = SkipLog()
    entries = list(affix_entries([Entry("-ness", "n.", "A suffix forming nouns.", "gcide"),
                                  Entry("Un-", "prefix.", "A prefix of negation.", "gcide"),
                                  Entry("-in-law", "n.", "Related by marriage.", "gcide"),
                                  Entry("-2x", "n.", "not letters", "gcide"), Entry("ness", "n.", "a headland", "gcide"),
                                  Entry("-", "n.", "a dash", "gcide")], skips))
    assert [(e.word, e.pos, e.position) for e in entries] == [
        ("ness", "suffix", "attached"), ("un", "prefix", "initial"), ("in-law", "suffix", "attached")]
    assert skips.counts == {"affix that is not letters": 1}
    suffix, prefix = entries[0], entries[1]
    assert gpt2.variants(suffix.word, suffix.cased, suffix.position)[0] == [(gpt2._encode("ness"), False)]
    assert gpt2.variants(prefix.word, prefix.cased, prefix.position)[0] == [(gpt2._encode(" un"), True)]
    assert [wordpiece.decode(ids) for ids, _ in wordpiece.variants(suffix.word, suffix.cased, suffix.position)[0]] == ["ness"]
    assert [ids for ids, _ in wordpiece.variants(suffix.word, suffix.cased, suffix.position)[0]] == [
        [wordpiece.dictionary.index("##ness")]]


def test_gcide_affixes_are_real(gcide_entries):
    entries = list(affix_entries(gcide_entries))
    words = {(e.word, e.pos) for e in entries}
    assert {("ness", "suffix"), ("ation", "suffix"), ("un", "prefix"), ("pre", "prefix")} <= words
    assert len(words) > 300


# -- coverage by shape ------------------------------------------------------------

def test_token_shapes():
    cases = {("used", True, False): "lower-case, word-initial", ("ases", False, False): "lower-case, continuation",
             ("Europe", True, False): "capitalized, word-initial", ("US", True, False): "all caps, word-initial",
             ("ER", False, False): "all caps, continuation", ("iPhone", True, False): "mixed case, word-initial",
             ("!", False, False): "punctuation and symbols", ("é", False, False): "non-ASCII",
             ("\\xe3", False, True): "partial UTF-8 bytes", ("", True, False): "whitespace and controls",
             ("[unused12]", True, False): "[unusedN] slot", ("1999", True, False): "digits",
             ("2nd", True, False): "letters and digits", ("'re", False, False): "letters with punctuation"}
    for (surface, initial, partial), shape in cases.items():
        assert token_shape(surface, initial, partial) == shape, surface


def test_coverage_counts_generic_whole_and_shapes(tmp_path):
    from preprocess.corpus.coverage import coverage_markdown, coverage_report
    from fairseq_defemb.data.vocabulary import load_model_dictionary

    symbols = ["used", "ases", "Europe", "US", "!", "é", "[unused3]", "Smith", "Sm", "ith"]
    (tmp_path / "dict.txt").write_text("".join(f"{s} {100 - k}\n" for k, s in enumerate(symbols)))
    d = load_model_dictionary(tmp_path / "dict.txt")
    ids = {s: d.index(s) for s in symbols}
    grounded = {"gcide": {ids["used"]}, "names": {ids["Europe"], ids["Smith"], ids["Sm"], ids["ith"]}}
    specific = {ids["used"], ids["Europe"], ids["Sm"]}  # "Smith" and "ith" only by "a surname"
    whole = {ids["used"], ids["Europe"], ids["Smith"]}  # "Sm" and "ith" only as pieces

    def shape(i):
        return token_shape(d[i], not d[i].startswith("as"), False)

    report = coverage_report(d, grounded, lambda i: d[i], specific=specific, whole=whole, shape=shape)
    assert report["grounded"]["grounded"] == 5 and report["grounded_only_generic"]["grounded"] == 2
    assert report["grounded_as_whole_variant"]["grounded"] == 3
    assert {k: v["tokens"] for k, v in report["ungrounded_by_shape"].items()} == {
        "lower-case, continuation": 1, "all caps, word-initial": 1, "punctuation and symbols": 1, "non-ASCII": 1,
        "[unusedN] slot": 1}
    assert sum(v["tokens"] for v in report["ungrounded_by_shape"].values()) + 5 == report["vocabulary_size"]
    md = coverage_markdown(report, "test")
    assert "| of which only by a category" in md and "| non-ASCII | 1 |" in md and "`é`" in md

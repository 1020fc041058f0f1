"""Manual entries (named entities, units, word pieces no dictionary covers), in two layouts.

``token-pos-definition``: ``token<TAB>pos<TAB>definition`` per line; the token is a word,
whose variants the prompt targets as for any dictionary headword. A token that starts with
the tokenizer's symbol mark (GPT-2 "\\u0120", sentencepiece "\\u2581", WordPiece "##") is a
vocabulary symbol instead, as in the other layout.

``index-token-pos-definition``: the layout of the paper authors' ``manual_definitions.txt``
(repository zhangying9128/DefinitionEMB, for BART's GPT-2 vocabulary and T5's sentencepiece
one): the header ``index<TAB>token<TAB>pos<TAB>definition``, then one line per sense. The
token is a symbol as the tokenizer writes it ("\\u0120iTunes", "taboola", "\\u2581Mihai"), or the
tokenizer's id in decimal; the entry grounds exactly that symbol's id, with no tokenization
of the word. ``index`` (optional) is the tokenizer's id of the symbol (GPT-2's encoder.json
id, the sentencepiece id), checked, not trusted: when it names another id the symbol wins,
since the definition describes the characters the symbol spells, and the line is counted as
an index disagreement. A digit token that is both a symbol and an id is read the way that
agrees with the index (the symbol without one).

``auto`` picks the second layout when the first line is its header. Fields are stripped
(the authors' files hold a token with a trailing space, a definition with a leading one);
a row of empty fields, a malformed line, a symbol the vocabulary lacks (or a token column
holding two words) is skipped and counted with its line, as for the other sources.
"""
import re
from pathlib import Path
from typing import Iterator

from fairseq_defemb.data.vocabulary import MASK_SYMBOL
from preprocess.corpus.entries import Entry, SkipLog, numbered_lines
from preprocess.corpus.tokenizers import CorpusBuildError, SubwordBackend

WORDS, SYMBOLS = "token-pos-definition", "index-token-pos-definition"
FORMATS = ("auto", WORDS, SYMBOLS)
HEADER = ["index", "token", "pos", "definition"]
NOT_WORDS = "not token<TAB>pos<TAB>definition"
NOT_SYMBOLS = "not index<TAB>token<TAB>pos<TAB>definition"
EMPTY_ROW = "empty row"
BAD_INDEX = "index not a whole number"
NOT_IN_VOCABULARY = "symbol not in the vocabulary"
SPECIAL = "special symbol (not a target)"
INDEX_DISAGREES = "index disagrees with the symbol's id (the symbol's id is used)"
DIGITS = re.compile(r"[0-9]+")


class VocabularySymbols:
    """The model's vocabulary as its tokenizer writes it: a manual file's symbol -> the dict.txt id."""

    def __init__(self, backend: SubwordBackend):
        self.backend = backend
        self.ids = backend.vocabulary_symbols()
        self.symbols = {i: s for s, i in self.ids.items()}

    def tokenizer_id(self, token: str, index: int | None) -> int | None:
        """The tokenizer's id that ``token`` names, written as a symbol or as the id in decimal."""
        readings = [self.ids[token]] if token in self.ids else []
        if DIGITS.fullmatch(token) and int(token) in self.symbols:
            readings.append(int(token))
        if not readings:
            return None
        return index if index in readings else readings[0]

    def dictionary_id(self, tokenizer_id: int) -> int | None:
        """This dict.txt's id of the tokenizer's id; None for a symbol dict.txt lacks."""
        symbol = self.backend.dictionary_symbol(self.symbols[tokenizer_id], tokenizer_id)
        return self.backend.dictionary.indices.get(symbol)

    def entry(self, token: str, index: int | None, pos: str, definition: str, where: str,
              skips: SkipLog) -> Entry | None:
        """The entry grounding the symbol's id, or None (skipped and counted at ``where``)."""
        tokenizer_id = self.tokenizer_id(token, index)
        token_id = None if tokenizer_id is None else self.dictionary_id(tokenizer_id)
        if token_id is None:
            skips.skip(NOT_IN_VOCABULARY, where)
            return None
        dictionary = self.backend.dictionary
        if token_id < dictionary.nspecial or dictionary[token_id] == MASK_SYMBOL:
            skips.skip(SPECIAL, where)
            return None
        if index is not None and index != tokenizer_id:
            skips.skip(INDEX_DISAGREES, where)
        return Entry(self.backend.surface(token_id), pos, definition, "manual", cased=False, token_id=token_id)


def read_manual(path: str | Path, skips: SkipLog | None = None, *, layout: str = "auto",
                backend: SubwordBackend | None = None) -> Iterator[Entry]:
    """The entries of a manual file in ``layout`` (one of ``FORMATS``). ``backend`` reads the
    vocabulary symbols; without it only words (``token-pos-definition``) can be read."""
    if layout not in FORMATS:
        raise CorpusBuildError(f"--manual-format {layout}: unknown (choose from {', '.join(FORMATS)})")
    skips = skips if skips is not None else SkipLog()
    symbols: VocabularySymbols | None = None
    expected = "token<TAB>pos<TAB>definition per line, or the header index<TAB>token<TAB>pos<TAB>definition"
    for count, (where, line) in enumerate(numbered_lines(path, "--manual-tsv", expected, skips)):
        if not count:  # the first line: a byte-order mark dropped, the header recognized
            line = line.removeprefix("\ufeff")
        fields = [f.strip() for f in line.split("\t")]
        if not count:
            header = [f.lower() for f in fields] == HEADER
            layout = (SYMBOLS if header else WORDS) if layout == "auto" else layout
            if layout == SYMBOLS and backend is None:
                raise CorpusBuildError(f"{path}: the {SYMBOLS} layout names vocabulary symbols; read it with the "
                                       "model's tokenizer (defemb-corpus --bpe ...)")
            if header and layout == SYMBOLS:
                continue
        if not line or (layout == WORDS and line.startswith("#")):
            continue
        if not any(fields):
            skips.skip(EMPTY_ROW, where)
            continue
        if layout == SYMBOLS:
            if len(fields) != 4 or not fields[1] or not fields[3]:
                skips.skip(NOT_SYMBOLS, where)
                continue
            index, token, pos, definition = fields
            if index and not DIGITS.fullmatch(index):
                skips.skip(BAD_INDEX, where)
                continue
        elif len(fields) != 3 or not fields[0] or not fields[2]:
            skips.skip(NOT_WORDS, where)
            continue
        else:
            (token, pos, definition), index = fields, ""
            if backend is None or not backend.symbol_marker or not token.startswith(backend.symbol_marker):
                yield Entry(token, pos, definition, "manual")
                continue
        symbols = symbols or VocabularySymbols(backend)
        entry = symbols.entry(token, int(index) if index else None, pos, definition, where, skips)
        if entry is not None:
            yield entry

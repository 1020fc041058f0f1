"""Subword backends: running text and headword variants to ids of the model's dictionary.

Every backend tokenizes a prompt piece by piece, so a headword variant's span is known
exactly by construction. Running text is encoded as if preceded by a space, the way
it sits inside a sentence.
"""
import copy
import re
import unicodedata
from pathlib import Path

from fairseq_defemb.data.gpt2_bpe import gpt2_bpe_utils
from fairseq_defemb.data.vocabulary import DictionaryFormatError, Vocabulary, load_model_dictionary


class CorpusBuildError(ValueError):
    """Input from which no corpus can be built; the message names the file and the fix."""


def load_dictionary(dict_path: str | Path) -> Vocabulary:
    """``load_model_dictionary`` (dict.txt + ``<mask>``), with a malformed file reported by
    file and line instead of a traceback."""
    path = Path(dict_path)
    if not path.is_file():
        raise CorpusBuildError(f"--vocab {path}: not found; pass the dict.txt beside the model (e.g. bart.large/dict.txt)")
    try:
        dictionary = load_model_dictionary(path)
    except DictionaryFormatError as err:
        raise CorpusBuildError(
            f"--vocab {err}; this is not a fairseq dict.txt (one '<symbol> <count>' per line, as in "
            "bart.large/dict.txt or the dict.txt written by defemb-convert-hf)"
        ) from None
    if len(dictionary) <= dictionary.nspecial + 1:
        raise CorpusBuildError(f"--vocab {path}: empty dictionary; pass the model's dict.txt")
    return dictionary


class SubwordBackend:
    name = "base"
    # How the tokenizer writes the mark of a word-initial symbol (GPT-2 "\u0120", sentencepiece "\u2581")
    # or of a continuation (WordPiece "##"): a manual file's word that starts with it is a symbol.
    symbol_marker = ""

    def __init__(self, dictionary: Vocabulary):
        self.dictionary = dictionary
        self.unk = dictionary.unk()

    def pieces_to_ids(self, pieces: list[str]) -> list[int]:
        return [self.dictionary.index(p) for p in pieces]

    def text(self, text: str) -> list[int]:
        """Running text, as it sits after a space inside a sentence."""
        raise NotImplementedError

    def glue(self, text: str) -> list[int]:
        """Text attached to what precedes it, without a space (GPT-2: "," not " ,")."""
        return self.text(text)

    def variant_forms(self, word: str, cased: bool = True) -> list[tuple[list[int], bool]]:
        """(ids, word_initial) of every lexical variant (``cased=False``: the word's own
        spelling only): word_initial is the form after a space (GPT-2 " word", WordPiece's
        bare first piece, sentencepiece's "\u2581word")."""
        raise NotImplementedError

    def surface(self, token_id: int) -> str:
        """The token's characters without the word-boundary marker (for numbers and reports)."""
        raise NotImplementedError

    def word_initial(self, token_id: int) -> bool:
        """Whether the token starts a word (GPT-2 "Ġ", sentencepiece "\u2581", WordPiece: no "##")."""
        raise NotImplementedError

    def partial_bytes(self, token_id: int) -> bool:
        """Whether the token is a fragment of a UTF-8 character (byte-level BPE only)."""
        return False

    def decode(self, ids) -> str:
        """Readable text of a prompt, specials as their symbols (for reports)."""
        raise NotImplementedError

    def vocabulary_symbols(self) -> dict[str, int]:
        """Every symbol as the tokenizer writes it -> the tokenizer's own id (GPT-2's encoder.json,
        a sentencepiece model's pieces, the lines of WordPiece's vocab.txt)."""
        raise NotImplementedError(f"--bpe {self.name}: reading vocabulary symbols is not implemented")

    def dictionary_symbol(self, symbol: str, tokenizer_id: int) -> str:
        """The dict.txt symbol of a tokenizer symbol: the piece itself, except for GPT-2."""
        return symbol

    def split_without(self, token_id: int) -> list[int]:
        """The pieces the tokenizer gives the token's own text if the token were not in its
        vocabulary (the subword initialiser of a new token); [] if nothing else spells it."""
        raise NotImplementedError(f"--bpe {self.name}: splitting a token without itself is not implemented")

    def variants(self, word: str, cased: bool = True, position: str = "any") -> tuple[list[tuple[list[int], bool]], int]:
        """Lexical variants (original, lower, capitalized; with and without the leading
        space) as (ids, word_initial), deduplicated by their ids; returns (variants, number
        dropped because a piece is not in the dictionary, i.e. maps to <unk>).
        ``cased=False`` keeps the word's own spelling, ``position`` "initial" or
        "attached" only the word-initial or only the attached forms."""
        seen, kept, dropped = set(), [], 0
        for ids, initial in self.variant_forms(word, cased):
            key = tuple(ids)
            if not ids or key in seen or (position != "any" and initial != (position == "initial")):
                continue
            seen.add(key)
            if self.unk in ids:
                dropped += 1
            else:
                kept.append((ids, initial))
        return kept, dropped


def casings(word: str, cased: bool = True) -> list[str]:
    if not cased:
        return [word]
    return list(dict.fromkeys([word, word.lower(), word[:1].upper() + word[1:].lower()]))


class GPT2Backend(SubwordBackend):
    """fairseq's GPT-2 BPE (BART, RoBERTa): dict.txt symbols are GPT-2 BPE ids as decimal strings."""

    name = "gpt2"
    symbol_marker = "\u0120"

    def __init__(self, dictionary: Vocabulary, encoder_json: str | Path, vocab_bpe: str | Path, dict_path: str = "dict.txt"):
        super().__init__(dictionary)
        for path, flag in ((encoder_json, "--gpt2-encoder-json"), (vocab_bpe, "--gpt2-vocab-bpe")):
            if not Path(path).is_file():
                raise CorpusBuildError(f"{flag} {path}: not found (`make install` fetches them to .cache/gpt2/)")
        try:
            self.bpe = gpt2_bpe_utils().get_encoder(str(encoder_json), str(vocab_bpe))
        except (ValueError, UnicodeDecodeError, IndexError) as err:
            raise CorpusBuildError(
                f"--gpt2-encoder-json {encoder_json} / --gpt2-vocab-bpe {vocab_bpe}: not GPT-2 BPE files ({err}); "
                "pass encoder.json and vocab.bpe of the model (`make install` fetches them to .cache/gpt2/)"
            ) from err
        self.files, self.fast = (str(encoder_json), str(vocab_bpe)), None
        n = len(self.bpe.encoder)
        for index in range(dictionary.nspecial, len(dictionary)):
            symbol = dictionary[index]
            if symbol == "<mask>" or symbol.startswith("madeupword"):
                continue
            # not `< n`: defemb-convert-hf's encoder.json maps tokens to their transformers ids, which skip
            # the specials, so its ids run past its size
            if not symbol.isdigit() or int(symbol) not in self.bpe.decoder:
                raise CorpusBuildError(
                    f"{dict_path}:{index - dictionary.nspecial + 1}: symbol '{symbol}' is not a GPT-2 BPE id of "
                    f"{encoder_json} ({n} entries). Pass the dict.txt of a GPT-2 BPE model (bart.large, roberta.base) "
                    "or pick the tokenizer that matches this vocabulary (--bpe wordpiece / sentencepiece)."
                )

    def _encode(self, text: str) -> list[int]:
        if self.fast is None:
            # the same ids as fairseq's encoder (tested on GCIDE), from the tokenizers library's compiled
            # BPE: fairseq's pure-Python merges were most of a GPT-2 corpus build's tokenising time
            from tokenizers import Tokenizer, models, pre_tokenizers

            self.fast = Tokenizer(models.BPE.from_file(*self.files))
            self.fast.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        return self.pieces_to_ids([str(i) for i in self.fast.encode(text, add_special_tokens=False).ids])

    def vocabulary_symbols(self) -> dict[str, int]:
        return self.bpe.encoder

    def dictionary_symbol(self, symbol: str, tokenizer_id: int) -> str:
        return str(tokenizer_id)

    def text(self, text: str) -> list[int]:
        return self._encode(" " + text)

    def glue(self, text: str) -> list[int]:
        return self._encode(text)

    def variant_forms(self, word: str, cased: bool = True) -> list[tuple[list[int], bool]]:
        return [(self._encode(prefix + w), prefix == " ") for w in casings(word, cased) for prefix in (" ", "")]

    def split_without(self, token_id: int) -> list[int]:
        chars = self.bpe.decoder[int(self.dictionary[token_id])]
        # The merges that build the token, dropped: BPE then stops one step short of it.
        without = copy.copy(self.bpe)
        without.bpe_ranks = {pair: rank for pair, rank in self.bpe.bpe_ranks.items() if "".join(pair) != chars}
        without.cache = {}
        pieces = [str(without.encoder[p]) for p in without.bpe(chars).split(" ")]
        return [] if pieces == [str(self.bpe.encoder[chars])] else self.pieces_to_ids(pieces)

    def _bytes(self, token_id: int) -> bytes | None:
        symbol = self.dictionary[token_id]
        if not symbol.isdigit() or int(symbol) not in self.bpe.decoder:
            return None
        return bytes(self.bpe.byte_decoder[c] for c in self.bpe.decoder[int(symbol)])

    def surface(self, token_id: int) -> str:
        raw = self._bytes(token_id)
        return self.dictionary[token_id] if raw is None else raw.decode("utf-8", errors="backslashreplace").lstrip(" ")

    def word_initial(self, token_id: int) -> bool:
        raw = self._bytes(token_id)
        return raw is not None and raw.startswith(b" ")

    def partial_bytes(self, token_id: int) -> bool:
        raw = self._bytes(token_id)
        if raw is None:
            return False
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return True
        return False

    def decode(self, ids) -> str:
        out, pending = [], b""
        for i in ids:
            raw = self._bytes(int(i))
            if raw is None:
                out.append(pending.decode("utf-8", errors="replace") + self.dictionary[int(i)])
                pending = b""
            else:
                pending += raw
        return "".join(out) + pending.decode("utf-8", errors="replace")


_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
               (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


# BERT's basic tokenisation of ASCII text in one regex: a run of letters and digits is a token, every
# other printable character one of its own, whitespace and control characters split
_ASCII_TOKEN = re.compile(r"[A-Za-z0-9]+|[!-/:-@\[-`{-~]")


def _is_cjk(ch: str) -> bool:
    """BERT's basic tokenizer makes every CJK ideograph a token of its own."""
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


class WordPieceBackend(SubwordBackend):
    """BERT WordPiece: basic tokenization, then greedy longest-match-first; "##" marks a
    continuation. The word-initial form plays the role of GPT-2's leading-space form."""

    name = "wordpiece"
    symbol_marker = "##"

    def __init__(self, dictionary: Vocabulary, vocab_txt: str | Path, lowercase: bool = True, dict_path: str = "dict.txt"):
        super().__init__(dictionary)
        path = Path(vocab_txt)
        if not path.is_file():
            raise CorpusBuildError(f"--wordpiece-vocab {path}: not found (the model's vocab.txt)")
        try:
            self.pieces = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as err:
            raise CorpusBuildError(f"--wordpiece-vocab {path}: not UTF-8 text ({err}); pass the model's vocab.txt") from err
        self.vocab = set(self.pieces)
        self.lowercase = lowercase
        symbols = [dictionary[i] for i in range(dictionary.nspecial, len(dictionary))]
        if sum(s in self.vocab for s in symbols) < 0.5 * len(symbols):
            raise CorpusBuildError(
                f"{dict_path}: most symbols are not WordPiece pieces of {path}; use the dict.txt written by "
                "defemb-convert-hf for this model, or the tokenizer that matches it"
            )

    def basic(self, text: str) -> list[str]:
        """BERT's basic tokenisation: the regex for ASCII text (nearly every definition; the character
        loop below spent most of a corpus build's tokenising time in unicodedata), the loop otherwise."""
        if text.isascii():
            return _ASCII_TOKEN.findall(text.lower() if self.lowercase else text)
        return self.basic_unicode(text)

    def basic_unicode(self, text: str) -> list[str]:
        if self.lowercase:
            text = "".join(c for c in unicodedata.normalize("NFD", text.lower()) if unicodedata.category(c) != "Mn")
        tokens, current = [], []
        for ch in text:
            if ch.isspace() or unicodedata.category(ch).startswith("C"):
                if current:
                    tokens.append("".join(current))
                    current = []
            elif unicodedata.category(ch).startswith("P") or (ch.isascii() and not ch.isalnum()) or _is_cjk(ch):
                if current:
                    tokens.append("".join(current))
                    current = []
                tokens.append(ch)
            else:
                current.append(ch)
        if current:
            tokens.append("".join(current))
        return tokens

    def wordpiece(self, token: str, continuation: bool = False, exclude: str = "") -> list[str]:
        if len(token) > 100:
            return ["[UNK]"]
        pieces, start = [], 0
        while start < len(token):
            end, found = len(token), None
            while start < end:
                piece = token[start:end]
                if start > 0 or continuation:
                    piece = "##" + piece
                if piece in self.vocab and piece != exclude:
                    found = piece
                    break
                end -= 1
            if found is None:
                return ["[UNK]"]
            pieces.append(found)
            start = end
        return pieces

    def vocabulary_symbols(self) -> dict[str, int]:
        return {piece: i for i, piece in enumerate(self.pieces)}  # BERT's ids are vocab.txt's line numbers

    def _ids(self, pieces: list[str]) -> list[int]:
        return [self.unk if p == "[UNK]" else self.dictionary.index(p) for p in pieces]

    def text(self, text: str) -> list[int]:
        return self._ids([p for t in self.basic(text) for p in self.wordpiece(t)])

    def variant_forms(self, word: str, cased: bool = True) -> list[tuple[list[int], bool]]:
        forms = []
        for w in casings(word, cased):
            tokens = self.basic(w)
            forms.append((self._ids([p for t in tokens for p in self.wordpiece(t)]), True))
            if len(tokens) == 1:  # a "##" continuation form exists only for a single basic token
                forms.append((self._ids(self.wordpiece(tokens[0], continuation=True)), False))
        return forms

    def surface(self, token_id: int) -> str:
        return self.dictionary[token_id].removeprefix("##")

    def word_initial(self, token_id: int) -> bool:
        return not self.dictionary[token_id].startswith("##")

    def decode(self, ids) -> str:
        pieces = [self.dictionary[int(i)] for i in ids]
        return "".join(p[2:] if p.startswith("##") else (" " + p if k else p) for k, p in enumerate(pieces))

    def split_without(self, token_id: int) -> list[int]:
        symbol = self.dictionary[token_id]
        pieces = self.wordpiece(symbol.removeprefix("##"), continuation=symbol.startswith("##"), exclude=symbol)
        return [] if pieces == ["[UNK]"] else self._ids(pieces)


class SentencePieceBackend(SubwordBackend):
    """sentencepiece models (T5-style); dict.txt symbols are the pieces. Only the
    word-initial ("▁") form of a variant exists as a standalone encoding."""

    name = "sentencepiece"
    symbol_marker = "\u2581"

    def __init__(self, dictionary: Vocabulary, model: str | Path, dict_path: str = "dict.txt"):
        super().__init__(dictionary)
        import sentencepiece

        if not Path(model).is_file():
            raise CorpusBuildError(f"--sentencepiece-model {model}: not found")
        try:
            self.sp = sentencepiece.SentencePieceProcessor(model_file=str(model))
        except (RuntimeError, OSError) as err:
            raise CorpusBuildError(f"--sentencepiece-model {model}: not a sentencepiece model ({err})") from err
        symbols = [dictionary[i] for i in range(dictionary.nspecial, len(dictionary)) if dictionary[i] != "<mask>"]
        unk = self.sp.unk_id()
        if sum(self.sp.piece_to_id(s) != unk for s in symbols) < 0.5 * len(symbols):
            raise CorpusBuildError(
                f"{dict_path}: most symbols are not pieces of {model}; pass the dict.txt of this sentencepiece "
                "model, or the tokenizer that matches this vocabulary (--bpe gpt2 / wordpiece)"
            )

    def text(self, text: str) -> list[int]:
        return self.pieces_to_ids(self.sp.encode(text, out_type=str))

    def variant_forms(self, word: str, cased: bool = True) -> list[tuple[list[int], bool]]:
        return [(self.text(w), True) for w in casings(word, cased)]

    def vocabulary_symbols(self) -> dict[str, int]:
        return {self.sp.id_to_piece(i): i for i in range(self.sp.get_piece_size())}

    def surface(self, token_id: int) -> str:
        return self.dictionary[token_id].lstrip("\u2581")

    def word_initial(self, token_id: int) -> bool:
        return self.dictionary[token_id].startswith("\u2581")

    def decode(self, ids) -> str:
        return "".join(self.dictionary[int(i)] for i in ids).replace("\u2581", " ")


def backend_from_config(config: dict, dictionary: Vocabulary) -> SubwordBackend:
    """Build the backend named in ``config`` (picklable, so worker processes rebuild it)."""
    kind = config["bpe"]
    if kind == "gpt2":
        return GPT2Backend(dictionary, config["gpt2_encoder_json"], config["gpt2_vocab_bpe"], config["vocab"])
    if kind == "wordpiece":
        return WordPieceBackend(dictionary, config["wordpiece_vocab"], config["lowercase"], config["vocab"])
    if kind == "sentencepiece":
        return SentencePieceBackend(dictionary, config["sentencepiece_model"], config["vocab"])
    raise CorpusBuildError(f"--bpe {kind}: unknown (gpt2, wordpiece, sentencepiece)")

"""Subword backends: running text and headword variants to ids of the model's dictionary.

Every backend tokenizes a prompt piece by piece, so a headword variant's span is known
exactly by construction. Running text is encoded as if preceded by a space, the way
it sits inside a sentence.
"""
import unicodedata
from pathlib import Path

from fairseq.data import Dictionary


class CorpusBuildError(ValueError):
    """Input from which no corpus can be built; the message names the file and the fix."""


class SubwordBackend:
    name = "base"

    def __init__(self, dictionary: Dictionary):
        self.dictionary = dictionary
        self.unk = dictionary.unk()

    def pieces_to_ids(self, pieces: list[str]) -> list[int]:
        return [self.dictionary.index(p) for p in pieces]

    def text(self, text: str) -> list[int]:
        raise NotImplementedError

    def variant_forms(self, word: str) -> list[list[int]]:
        raise NotImplementedError

    def surface(self, token_id: int) -> str:
        """The token's characters without the word-boundary marker (for numbers and reports)."""
        raise NotImplementedError

    def variants(self, word: str) -> tuple[list[list[int]], int]:
        """Lexical variants (original, lower, capitalized; with and without the leading
        space), deduplicated by their ids; returns (variants, number dropped for <unk>)."""
        seen, kept, dropped = set(), [], 0
        for ids in self.variant_forms(word):
            key = tuple(ids)
            if not ids or key in seen:
                continue
            seen.add(key)
            if self.unk in ids:
                dropped += 1
            else:
                kept.append(ids)
        return kept, dropped


def casings(word: str) -> list[str]:
    return list(dict.fromkeys([word, word.lower(), word[:1].upper() + word[1:].lower()]))


class GPT2Backend(SubwordBackend):
    """fairseq's GPT-2 BPE (BART, RoBERTa): dict.txt symbols are GPT-2 BPE ids as decimal strings."""

    name = "gpt2"

    def __init__(self, dictionary: Dictionary, encoder_json: str | Path, vocab_bpe: str | Path, dict_path: str = "dict.txt"):
        super().__init__(dictionary)
        from fairseq.data.encoders.gpt2_bpe_utils import get_encoder

        for path, flag in ((encoder_json, "--gpt2-encoder-json"), (vocab_bpe, "--gpt2-vocab-bpe")):
            if not Path(path).is_file():
                raise CorpusBuildError(f"{flag} {path}: not found (`make install` fetches them to .cache/gpt2/)")
        self.bpe = get_encoder(str(encoder_json), str(vocab_bpe))
        n = len(self.bpe.encoder)
        for index in range(dictionary.nspecial, len(dictionary)):
            symbol = dictionary[index]
            if symbol == "<mask>" or symbol.startswith("madeupword"):
                continue
            if not symbol.isdigit() or int(symbol) >= n:
                raise CorpusBuildError(
                    f"{dict_path}:{index - dictionary.nspecial + 1}: symbol '{symbol}' is not a GPT-2 BPE id of "
                    f"{encoder_json} ({n} entries). Pass the dict.txt of a GPT-2 BPE model (bart.large, roberta.base) "
                    "or pick the tokenizer that matches this vocabulary (--bpe wordpiece / sentencepiece)."
                )

    def _encode(self, text: str) -> list[int]:
        return self.pieces_to_ids([str(i) for i in self.bpe.encode(text)])

    def text(self, text: str) -> list[int]:
        return self._encode(" " + text)

    def variant_forms(self, word: str) -> list[list[int]]:
        return [self._encode(prefix + w) for w in casings(word) for prefix in (" ", "")]

    def surface(self, token_id: int) -> str:
        symbol = self.dictionary[token_id]
        if not symbol.isdigit() or int(symbol) not in self.bpe.decoder:
            return symbol
        chars = self.bpe.decoder[int(symbol)]
        return bytearray(self.bpe.byte_decoder[c] for c in chars).decode("utf-8", errors="replace").lstrip(" ")


class WordPieceBackend(SubwordBackend):
    """BERT WordPiece: basic tokenization, then greedy longest-match-first; "##" marks a
    continuation. The word-initial form plays the role of GPT-2's leading-space form."""

    name = "wordpiece"

    def __init__(self, dictionary: Dictionary, vocab_txt: str | Path, lowercase: bool = True, dict_path: str = "dict.txt"):
        super().__init__(dictionary)
        path = Path(vocab_txt)
        if not path.is_file():
            raise CorpusBuildError(f"--wordpiece-vocab {path}: not found (the model's vocab.txt)")
        self.vocab = set(path.read_text(encoding="utf-8").splitlines())
        self.lowercase = lowercase
        symbols = [dictionary[i] for i in range(dictionary.nspecial, len(dictionary))]
        if sum(s in self.vocab for s in symbols) < 0.5 * len(symbols):
            raise CorpusBuildError(
                f"{dict_path}: most symbols are not WordPiece pieces of {path}; use the dict.txt written by "
                "defemb-convert-hf for this model, or the tokenizer that matches it"
            )

    def basic(self, text: str) -> list[str]:
        if self.lowercase:
            text = "".join(c for c in unicodedata.normalize("NFD", text.lower()) if unicodedata.category(c) != "Mn")
        tokens, current = [], []
        for ch in text:
            if ch.isspace() or unicodedata.category(ch).startswith("C"):
                if current:
                    tokens.append("".join(current))
                    current = []
            elif unicodedata.category(ch).startswith("P") or (ch.isascii() and not ch.isalnum()):
                if current:
                    tokens.append("".join(current))
                    current = []
                tokens.append(ch)
            else:
                current.append(ch)
        if current:
            tokens.append("".join(current))
        return tokens

    def wordpiece(self, token: str, continuation: bool = False) -> list[str]:
        if len(token) > 100:
            return ["[UNK]"]
        pieces, start = [], 0
        while start < len(token):
            end, found = len(token), None
            while start < end:
                piece = token[start:end]
                if start > 0 or continuation:
                    piece = "##" + piece
                if piece in self.vocab:
                    found = piece
                    break
                end -= 1
            if found is None:
                return ["[UNK]"]
            pieces.append(found)
            start = end
        return pieces

    def _ids(self, pieces: list[str]) -> list[int]:
        return [self.unk if p == "[UNK]" else self.dictionary.index(p) for p in pieces]

    def text(self, text: str) -> list[int]:
        return self._ids([p for t in self.basic(text) for p in self.wordpiece(t)])

    def variant_forms(self, word: str) -> list[list[int]]:
        forms = []
        for w in casings(word):
            tokens = self.basic(w)
            forms.append(self._ids([p for t in tokens for p in self.wordpiece(t)]))
            if len(tokens) == 1:
                forms.append(self._ids(self.wordpiece(tokens[0], continuation=True)))
        return forms

    def surface(self, token_id: int) -> str:
        return self.dictionary[token_id].removeprefix("##")


class SentencePieceBackend(SubwordBackend):
    """sentencepiece models (T5-style); dict.txt symbols are the pieces. Only the
    word-initial ("▁") form of a variant exists as a standalone encoding."""

    name = "sentencepiece"

    def __init__(self, dictionary: Dictionary, model: str | Path):
        super().__init__(dictionary)
        import sentencepiece

        if not Path(model).is_file():
            raise CorpusBuildError(f"--sentencepiece-model {model}: not found")
        self.sp = sentencepiece.SentencePieceProcessor(model_file=str(model))

    def text(self, text: str) -> list[int]:
        return self.pieces_to_ids(self.sp.encode(text, out_type=str))

    def variant_forms(self, word: str) -> list[list[int]]:
        return [self.text(w) for w in casings(word)]

    def surface(self, token_id: int) -> str:
        return self.dictionary[token_id].lstrip("\u2581")


def backend_from_config(config: dict, dictionary: Dictionary) -> SubwordBackend:
    """Build the backend named in ``config`` (picklable, so worker processes rebuild it)."""
    kind = config["bpe"]
    if kind == "gpt2":
        return GPT2Backend(dictionary, config["gpt2_encoder_json"], config["gpt2_vocab_bpe"], config["vocab"])
    if kind == "wordpiece":
        return WordPieceBackend(dictionary, config["wordpiece_vocab"], config["lowercase"], config["vocab"])
    if kind == "sentencepiece":
        return SentencePieceBackend(dictionary, config["sentencepiece_model"])
    raise CorpusBuildError(f"--bpe {kind}: unknown (gpt2, wordpiece, sentencepiece)")

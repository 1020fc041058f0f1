"""The model dictionary as fairseq's BART/RoBERTa tasks build it.

``dict.txt`` of ``bart.large``/``roberta.base`` lists the BPE symbols; the
pretraining tasks (``denoising``, ``masked_lm``) append ``<mask>``, which is why the
checkpoints have ``len(dict.txt) + 5`` embedding rows (4 specials + ``<mask>``).
Every tool here builds the dictionary the same way, so ids agree everywhere.

:class:`Vocabulary` reads ``dict.txt`` exactly as ``fairseq.data.Dictionary.load`` does
(tests/test_vocabulary.py checks it against fairseq on awkward files) without importing
fairseq, which costs the commands that only need ids (surgery, analysis, the corpus
builder) several seconds of start-up. The plugin keeps fairseq's own class
(:func:`load_fairseq_dictionary`): fairseq's task and model code expects it.
"""
import hashlib
from pathlib import Path
from typing import Any

MASK_SYMBOL = "<mask>"
SPECIAL_SYMBOLS = ("<s>", "<pad>", "</s>", "<unk>")  # fairseq's ids 0..3
OVERWRITE_FLAG = "#fairseq:overwrite"


class DictionaryFormatError(ValueError):
    """A dict.txt that fairseq's Dictionary.load would refuse; the message names the file and line."""


class Vocabulary:
    """Symbols <-> ids with fairseq ``Dictionary``'s semantics, for the part of its API the library uses:
    ``symbols``, ``count``, ``indices``, ``nspecial``, ``len``, ``[id]``, ``in``, ``index``, ``add_symbol``,
    ``bos()``/``pad()``/``eos()``/``unk()``."""

    def __init__(self) -> None:
        self.bos_word, self.pad_word, self.eos_word, self.unk_word = SPECIAL_SYMBOLS
        self.symbols: list[str] = []
        self.count: list[int] = []
        self.indices: dict[str, int] = {}
        self.bos_index, self.pad_index, self.eos_index, self.unk_index = (self.add_symbol(s) for s in SPECIAL_SYMBOLS)
        self.nspecial = len(self.symbols)

    def __eq__(self, other: Any) -> bool:  # as fairseq's: the same symbol -> id map
        return self.indices == other.indices

    def __getitem__(self, idx: int) -> str:
        return self.symbols[idx] if idx < len(self.symbols) else self.unk_word

    def __len__(self) -> int:
        return len(self.symbols)

    def __contains__(self, symbol: str) -> bool:
        return symbol in self.indices

    def index(self, symbol: str) -> int:
        if not isinstance(symbol, str):
            raise TypeError(f"symbol {symbol!r}: a str is needed")
        return self.indices.get(symbol, self.unk_index)

    def get_count(self, idx: int) -> int:
        return self.count[idx]

    def add_symbol(self, word: str, n: int = 1, overwrite: bool = False) -> int:
        """Add ``word`` (or add ``n`` to its count); with ``overwrite`` a repeated word gets a new id
        and the old row stays, as in fairseq (``#fairseq:overwrite`` lines)."""
        if word in self.indices and not overwrite:
            idx = self.indices[word]
            self.count[idx] += n
            return idx
        idx = len(self.symbols)
        self.indices[word] = idx
        self.symbols.append(word)
        self.count.append(n)
        return idx

    def bos(self) -> int:
        return self.bos_index

    def pad(self) -> int:
        return self.pad_index

    def eos(self) -> int:
        return self.eos_index

    def unk(self) -> int:
        return self.unk_index

    @classmethod
    def load(cls, path: str | Path) -> "Vocabulary":
        """The specials, then one symbol per ``<symbol> <count> [#fairseq:overwrite]`` line of ``path``."""
        vocabulary = cls()
        data = Path(path).read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            line = data[:err.start].count(b"\n") + 1
            raise DictionaryFormatError(f"{path}:{line}: not UTF-8 ({err.reason})") from None
        # fairseq reads the file in text mode: universal newlines, so "\r\n" and a lone "\r" end a line too,
        # and nothing else does (str.splitlines would also split at \x0b, \x1c, \x85, \u2028, ...).
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        if lines[-1] == "":  # the text after the last newline, if any, is a line of its own
            lines.pop()
        for lineno, raw in enumerate(lines, 1):
            try:
                word, field = raw.rstrip().rsplit(" ", 1)
                overwrite = field == OVERWRITE_FLAG
                if overwrite:
                    word, field = word.rsplit(" ", 1)
                count = int(field)
            except ValueError:
                raise DictionaryFormatError(f"{path}:{lineno}: expected '<symbol> <count> [{OVERWRITE_FLAG}]', "
                                            f"got {raw.rstrip()!r}") from None
            if word in vocabulary and not overwrite:
                raise DictionaryFormatError(f"{path}:{lineno}: duplicate symbol {word!r} (fairseq refuses it unless "
                                            f"the line ends with {OVERWRITE_FLAG})")
            vocabulary.add_symbol(word, n=count, overwrite=overwrite)
        return vocabulary


def _checked_path(dict_path: str | Path) -> Path:
    path = Path(dict_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: dictionary not found. Pass the dict.txt that ships beside the "
            "pretrained model.pt (e.g. bart.large/dict.txt)."
        )
    return path


def load_model_dictionary(dict_path: str | Path) -> Vocabulary:
    """Load ``dict.txt`` and append ``<mask>`` exactly as fairseq's pretraining tasks do."""
    vocabulary = Vocabulary.load(_checked_path(dict_path))
    vocabulary.add_symbol(MASK_SYMBOL)
    return vocabulary


def load_fairseq_dictionary(dict_path: str | Path):
    """``load_model_dictionary`` as a ``fairseq.data.Dictionary``, for fairseq's own task and model code."""
    from fairseq.data import Dictionary

    dictionary = Dictionary.load(str(_checked_path(dict_path)))
    dictionary.add_symbol(MASK_SYMBOL)
    return dictionary


def dictionary_sha256(dict_path: str | Path) -> str:
    """Hash of the dictionary file's bytes: two corpora/checkpoints agree iff their dict.txt do."""
    return hashlib.sha256(Path(dict_path).read_bytes()).hexdigest()

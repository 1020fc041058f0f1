"""The model dictionary as fairseq's BART/RoBERTa tasks build it.

``dict.txt`` of ``bart.large``/``roberta.base`` lists the BPE symbols; the
pretraining tasks (``denoising``, ``masked_lm``) append ``<mask>``, which is why the
checkpoints have ``len(dict.txt) + 5`` embedding rows (4 specials + ``<mask>``).
Every tool here builds the dictionary the same way, so ids agree everywhere.
"""
import hashlib
from pathlib import Path

from fairseq.data import Dictionary

MASK_SYMBOL = "<mask>"


def load_model_dictionary(dict_path: str | Path) -> Dictionary:
    """Load ``dict.txt`` and append ``<mask>`` exactly as fairseq's pretraining tasks do."""
    path = Path(dict_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: dictionary not found. Pass the dict.txt that ships beside the "
            "pretrained model.pt (e.g. bart.large/dict.txt)."
        )
    try:
        dictionary = Dictionary.load(str(path))
    except Exception as err:  # fairseq raises bare Exception for bad UTF-8, ValueError/RuntimeError for bad lines
        raise ValueError(f"{path}:{malformed_dict_line(path)}: not a fairseq dict.txt ({err}); each line must be "
                         "'<symbol> <count>' in UTF-8, as in bart.large/dict.txt or the dict.txt written by "
                         "defemb-convert-hf") from None
    dictionary.add_symbol(MASK_SYMBOL)
    return dictionary


def malformed_dict_line(path: Path) -> str:
    """The number of the first line of ``path`` that is not UTF-8 ``<symbol> <count>`` ('?' if none)."""
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, 1):
            try:
                fields = raw.decode("utf-8").rstrip("\r\n").rsplit(" ", 1)
            except UnicodeDecodeError:
                return str(lineno)
            if not (len(fields) == 2 and (fields[1].lstrip("-").isdigit() or fields[1].startswith("#"))):
                return str(lineno)
    return "?"


def dictionary_sha256(dict_path: str | Path) -> str:
    """Hash of the dictionary file's bytes: two corpora/checkpoints agree iff their dict.txt do."""
    return hashlib.sha256(Path(dict_path).read_bytes()).hexdigest()

"""The text side of added tokens for fairseq's GPT-2 BPE (BART, RoBERTa).

``dict.txt`` symbols are GPT-2 BPE ids, so a new word gets new BPE ids: ``encoder.json`` is
extended (id 50257, 50258, ... for GPT-2's own 50,257) with one entry per form of the word: the
word-initial form (" covid", GPT-2's ``Ġcovid``) and the attached form ("covid", after "(" or
at the start of a line). BPE merges never build these entries, so stock
``multiprocessing_bpe_encoder`` never emits them: :class:`AddedTokenEncoder` (``defemb-bpe-encode``,
the same options) does. Decoding needs nothing new: stock ``fairseq-generate --bpe gpt2
--gpt2-encoder-json OUT/encoder.json`` looks the new ids up in the extended ``encoder.json``.

Where a form matches: on GPT-2's own pre-token boundaries. The text is split by GPT-2's regex;
a run of consecutive pre-tokens whose concatenation is an added form (longest first) becomes its
id, every other pre-token goes through stock BPE. So " covid" matches in "I had covid." but not
in " covids" (one pre-token), and "COVID-19" (pre-tokens " COVID", "-", "19") can be a word.
Each output id decodes to exactly the characters it consumed, so decode(encode(text)) == text
for any text.
"""
import json
from pathlib import Path

ADDED_TOKENS_FILE = "added_tokens.json"


def read_added_tokens(path: str | Path) -> dict[str, int]:
    """form -> BPE id of an ``added_tokens.json`` written by ``defemb-add-tokens``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (defemb-add-tokens writes {ADDED_TOKENS_FILE} beside encoder.json)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not an {ADDED_TOKENS_FILE} of defemb-add-tokens (not JSON: {err})") from None
    forms = data.get("forms") if isinstance(data, dict) else None
    if not isinstance(forms, dict) or not all(isinstance(v, int) for v in forms.values()):
        raise ValueError(f"{path}: not an {ADDED_TOKENS_FILE} of defemb-add-tokens (no 'forms' object of ids)")
    return forms


class AddedTokenEncoder:
    """Stock GPT-2 BPE plus whole-form matches of the added tokens (see the module docstring)."""

    def __init__(self, encoder_json: str | Path, vocab_bpe: str | Path, added: dict[str, int]):
        from fairseq.data.encoders.gpt2_bpe_utils import get_encoder

        self.bpe = get_encoder(str(encoder_json), str(vocab_bpe))
        for form, token in added.items():
            chars = self.chars(form)
            if self.bpe.encoder.get(chars) != token:
                raise ValueError(f"{encoder_json}: added form {form!r} is not id {token} there; pass the encoder.json "
                                 f"written with this {ADDED_TOKENS_FILE}")
        self.added = dict(added)
        self.parts = {form: len(self.bpe.re.findall(self.bpe.pat, form)) for form in added}
        self.longest = max(self.parts.values(), default=0)

    def chars(self, text: str) -> str:
        return "".join(self.bpe.byte_encoder[b] for b in text.encode("utf-8"))

    def encode(self, text: str) -> list[int]:
        pieces = self.bpe.re.findall(self.bpe.pat, text)
        ids, i = [], 0
        while i < len(pieces):
            for k in range(min(self.longest, len(pieces) - i), 0, -1):
                form = "".join(pieces[i:i + k])
                if self.parts.get(form) == k:
                    ids.append(self.added[form])
                    i += k
                    break
            else:
                ids.extend(self.bpe.encoder[t] for t in self.bpe.bpe(self.chars(pieces[i])).split(" "))
                i += 1
        return ids

    def decode(self, ids: list[int]) -> str:
        return self.bpe.decode(ids)

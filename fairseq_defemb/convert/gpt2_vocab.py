"""Byte-level BPE vocabularies both ways: transformers' ``vocab.json`` + ``merges.txt`` (token
string -> model id) and fairseq's ``encoder.json`` + ``vocab.bpe`` + ``dict.txt`` (token string ->
BPE id, BPE id -> model id).

HF -> fairseq: each BPE token's HF id becomes its BPE id in ``encoder.json``, and ``dict.txt``
lists the ids in HF order, so fairseq id == HF id for every row and the round trip is exact.
Tokens BPE cannot produce (``madeupwordNNNN`` fillers, added tokens) are written to dict.txt
literally, as fairseq's own preprocessing writes its fillers.

fairseq -> HF: row k of the fairseq dictionary is HF id k. A BPE token the dictionary lacks
becomes ``<unk>`` in fairseq; ``vocab.json`` maps it to ``<unk>``'s id so transformers agrees.
"""
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from fairseq_defemb.convert.hf_common import FAIRSEQ_SPECIALS, MASK, ConversionError, read_json_object

MERGES_HEADER = "#version: 0.2"
FILLER = re.compile(r"madeupword\d+")


def byte_level_alphabet() -> set[str]:
    """The 256 printable stand-ins GPT-2's byte-level BPE uses for the bytes (bytes_to_unicode)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in printable]
    return {chr(b) for b in printable} | {chr(256 + n) for n in range(len(extra))}


def read_merges_file(path: Path) -> list[tuple[str, str]]:
    """Merges as fairseq's GPT-2 encoder reads vocab.bpe: the header line and the last line
    (empty after the final newline) dropped, each line split at whitespace."""
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as err:
        raise ConversionError(f"{path}: not UTF-8 ({err})") from None
    if not lines[0].startswith("#version"):
        raise ConversionError(f"{path}: first line {lines[0][:40]!r} is not a '#version' header; not a BPE merges file")
    merges = []
    for lineno, line in enumerate(lines[1:-1] if lines[-1] == "" else lines[1:], 2):
        pair = tuple(line.split())
        if len(pair) != 2:
            raise ConversionError(f"{path}:{lineno}: {line[:60]!r} is not a merge ('left right')")
        merges.append(pair)
    return merges


def write_merges_file(path: Path, merges: list[tuple[str, str]]) -> None:
    path.write_text("".join(f"{line}\n" for line in [MERGES_HEADER, *(f"{a} {b}" for a, b in merges)]),
                    encoding="utf-8")


def read_hf_tokenizer(model_dir: Path) -> tuple[dict[str, int], list[tuple[str, str]], set[str], Path]:
    """``(vocab, merges, added_tokens, vocab_path)`` from vocab.json + merges.txt, else tokenizer.json."""
    added = set()
    tokenizer_json = model_dir / "tokenizer.json"
    if tokenizer_json.is_file():
        data = read_json_object(tokenizer_json)
        added = {t["content"] for t in data.get("added_tokens", []) if isinstance(t, dict) and "content" in t}
    if (model_dir / "vocab.json").is_file() and (model_dir / "merges.txt").is_file():
        vocab = read_json_object(model_dir / "vocab.json")
        return vocab, read_merges_file(model_dir / "merges.txt"), added, model_dir / "vocab.json"
    if not tokenizer_json.is_file():
        raise ConversionError(f"{model_dir}: no tokenizer: needs vocab.json + merges.txt or tokenizer.json "
                              "(save the tokenizer with tokenizer.save_pretrained(dir))")
    model = data.get("model") or {}
    if model.get("type") != "BPE" or not isinstance(model.get("vocab"), dict):
        raise ConversionError(f"{tokenizer_json}: model type {model.get('type')!r}; only byte-level BPE "
                              "(BART/RoBERTa's GPT-2 tokenizer) converts")
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model.get("merges", [])]
    return model["vocab"], merges, added, tokenizer_json


@dataclass
class FairseqVocabulary:
    """What dict.txt, encoder.json and vocab.bpe hold for one HF vocabulary."""
    dict_lines: list[str]
    encoder: dict[str, int]
    merges: list[tuple[str, str]]
    literal_symbols: list[str] = field(default_factory=list)


def hf_to_fairseq(vocab: dict[str, int], merges: list[tuple[str, str]], added: set[str], vocab_path: Path,
                  vocab_size: int) -> FairseqVocabulary:
    """Check the HF vocabulary has fairseq's layout and derive dict.txt / encoder.json / vocab.bpe."""
    by_id: dict[int, str] = {}
    for token, index in vocab.items():
        if not isinstance(index, int) or index in by_id:
            raise ConversionError(f"{vocab_path}: id {index!r} of {token!r} is not a unique integer")
        by_id[index] = token
    if sorted(by_id) != list(range(len(by_id))) or len(by_id) != vocab_size:
        raise ConversionError(f"{vocab_path}: ids are not 0..{vocab_size - 1} (config.json vocab_size {vocab_size}); "
                              "fairseq needs one dictionary row per embedding row")
    for index, special in enumerate(FAIRSEQ_SPECIALS):
        if by_id[index] != special:
            raise ConversionError(f"{vocab_path}: id {index} is {by_id[index]!r}, fairseq's dictionary has {special!r} "
                                  f"there (ids 0-3: {' '.join(FAIRSEQ_SPECIALS)}); not a BART/RoBERTa vocabulary")
    if MASK in vocab and vocab[MASK] != vocab_size - 1:
        raise ConversionError(f"{vocab_path}: {MASK} has id {vocab[MASK]}, fairseq's masked_lm/denoising tasks "
                              f"append it last (id {vocab_size - 1})")
    alphabet = byte_level_alphabet()
    missing_bytes = sorted(alphabet - vocab.keys())
    if missing_bytes:
        raise ConversionError(f"{vocab_path}: lacks {len(missing_bytes)} of the 256 byte symbols (e.g. "
                              f"{missing_bytes[0]!r}); not a byte-level BPE vocabulary")
    result = FairseqVocabulary(dict_lines=[], encoder={}, merges=merges)
    last = vocab_size - 1 if MASK in vocab else vocab_size
    for index in range(len(FAIRSEQ_SPECIALS), last):
        token = by_id[index]
        literal = token in added or FILLER.fullmatch(token) or not set(token) <= alphabet
        if literal:
            if token.isdigit() or not token or any(c.isspace() for c in token) or token in FAIRSEQ_SPECIALS:
                raise ConversionError(f"{vocab_path}: token {token!r} (id {index}) cannot be a literal dict.txt "
                                      "symbol (digits are BPE ids there; whitespace splits the line)")
            result.literal_symbols.append(token)
            symbol = token
        else:
            result.encoder[token] = index
            symbol = str(index)
        result.dict_lines.append(f"{symbol} {vocab_size - index}")  # rank-derived count: HF keeps none
    for lineno, (a, b) in enumerate(merges, 2):
        if a + b not in result.encoder:
            raise ConversionError(f"{vocab_path}: merge {a!r} {b!r} (merges line {lineno}) makes {a + b!r}, "
                                  "which the vocabulary lacks")
    return result


def write_fairseq_vocabulary(out: Path, fv: FairseqVocabulary) -> None:
    (out / "dict.txt").write_text("".join(f"{line}\n" for line in fv.dict_lines), encoding="utf-8")
    (out / "encoder.json").write_text(json.dumps(fv.encoder, ensure_ascii=False), encoding="utf-8")
    write_merges_file(out / "vocab.bpe", fv.merges)


@dataclass
class HFVocabulary:
    vocab: dict[str, int]  # token -> HF id (= fairseq id); BPE tokens outside dict.txt -> <unk>'s id
    tokens: list[str]  # HF token of each fairseq row
    unreachable: int  # BPE tokens of encoder.json that dict.txt lacks (fairseq reads them as <unk>)


def fairseq_to_hf(symbols: list[str], encoder: dict[str, int], dict_path: Path, encoder_path: Path) -> HFVocabulary:
    """Row k of the fairseq dictionary -> HF token k. ``symbols`` are Dictionary.symbols."""
    decoder = {v: k for k, v in encoder.items()}
    tokens, rows = [], {}
    for row, symbol in enumerate(symbols):
        if row < len(FAIRSEQ_SPECIALS) or symbol == MASK or not symbol.isdigit():
            token = symbol  # specials, <mask>, madeupword fillers and added tokens stay literal
        elif int(symbol) in decoder:
            token = decoder[int(symbol)]
        else:
            raise ConversionError(f"{dict_path}:{row - len(FAIRSEQ_SPECIALS) + 1}: symbol {symbol!r} is not an id of "
                                  f"{encoder_path} ({len(encoder)} entries); pass the encoder.json/vocab.bpe the "
                                  "dictionary was built with")
        if token in rows:
            raise ConversionError(f"{dict_path}: rows {rows[token]} and {row} are both the token {token!r}; "
                                  "a tokenizer cannot tell them apart")
        rows[token] = row
        tokens.append(token)
    vocab = dict(rows)
    unk = symbols.index("<unk>")
    unreachable = 0
    for token in encoder:
        if token not in vocab:
            vocab[token] = unk
            unreachable += 1
    return HFVocabulary(vocab=vocab, tokens=tokens, unreachable=unreachable)

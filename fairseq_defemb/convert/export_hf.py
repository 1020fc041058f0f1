"""``defemb-export-hf``'s library: a fairseq BART or RoBERTa checkpoint directory (stock,
converted or surgered; any size; fp32 or fp16) -> a transformers directory.

The output holds ``config.json``, ``model.safetensors`` (the source dtype), ``generation_config.json``
(BART), the tokenizer (``vocab.json`` in the fairseq dictionary's order + ``merges.txt``,
``tokenizer.json``, ``tokenizer_config.json``, specials and ``<mask>``) and ``export.json``; it
loads offline with ``AutoModel*.from_pretrained(out)`` and ``AutoTokenizer.from_pretrained(out)``.
Fairseq row k is transformers id k: ``madeupword`` fillers and ``<mask>`` keep their rows.

A fairseq RoBERTa whose dictionary is WordPiece (a BERT converted by ``defemb-convert-hf``, e.g.
the demo's MiniLM) exports to ``BertForMaskedLM`` + ``BertTokenizer`` instead: transformers'
RoBERTa tokenizer is byte-level BPE only (fairseq_defemb.convert.export_bert).

The source is loaded by fairseq itself (``checkpoint_utils.load_model_ensemble_and_task`` with the
checkpoint directory as data), so old argument formats and key names are upgraded as fairseq does.
"""
import json
from pathlib import Path
from typing import Any

import torch

from fairseq_defemb.atomic_io import atomic_output_dir
from fairseq_defemb.convert import export_bert, hf_bart, hf_roberta
from fairseq_defemb.convert.gpt2_vocab import FILLER, fairseq_to_hf, read_merges_file
from fairseq_defemb.convert.hf_common import (
    FAIRSEQ_SPECIALS, MASK, POSITION_OFFSET, ConversionError, VerificationError, read_json_object, sha256,
)


def export_hf(*, checkpoint: str | Path, out: str | Path, gpt2_encoder_json: str | Path | None = None,
              gpt2_vocab_bpe: str | Path | None = None, lowercase: bool | None = None, overwrite: bool = False,
              verify: bool = False, sentences: list[str] | None = None) -> dict:
    """Export ``checkpoint`` (a directory with model.pt and dict.txt) to ``out``, atomically.

    GPT-2 BPE dictionaries need encoder.json/vocab.bpe: the given paths, else the files beside
    model.pt (``defemb-convert-hf`` writes them there). ``lowercase`` is for WordPiece
    dictionaries (None: lower-case iff under 1% of the symbols have an upper-case letter). ``verify`` compares
    fairseq and the written directory before it appears; a difference raises VerificationError."""
    source, out = Path(checkpoint), Path(out)
    model_pt = source / "model.pt" if source.is_dir() else source
    ckpt_dir = model_pt.parent
    for path, fix in ((model_pt, "--checkpoint must be a fairseq checkpoint directory holding model.pt"),
                      (ckpt_dir / "dict.txt", "put the model's dict.txt beside model.pt")):
        if not path.is_file():
            raise ConversionError(f"{path}: missing; {fix}")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: output directory exists; pick a new --out or pass --overwrite")
    model, task, model_cfg, dtype = load_fairseq(model_pt)
    symbols = list(task.source_dictionary.symbols)
    family = "bart" if type(model).__name__ == "BARTModel" else "roberta"
    state = model.state_dict()
    kind = vocabulary_kind(symbols, ckpt_dir / "dict.txt")
    report: dict[str, Any] = {"source": str(model_pt.resolve()), "source_sha256": sha256(model_pt), "family": family,
                              "tokenizer": kind, "dtype": str(dtype).removeprefix("torch."),
                              "vocabulary": len(symbols), "rows": "fairseq row k = transformers id k"}
    encoder_json = vocab_bpe = None
    if kind == "gpt2":
        encoder_json, vocab_bpe = gpt2_files(ckpt_dir, gpt2_encoder_json, gpt2_vocab_bpe)
        module = hf_bart if family == "bart" else hf_roberta
    elif family == "roberta":
        module = export_bert
    else:
        raise ConversionError(f"{ckpt_dir / 'dict.txt'}: a WordPiece dictionary in a BART checkpoint; only "
                              "RoBERTa-layout WordPiece models (converted BERTs) export, to BertForMaskedLM")
    config = module.hf_config(model_cfg, state, symbols, model_pt)
    hf_state, report["dropped"] = module.to_hf_state(state, model_pt)
    report["config"] = {k: v for k, v in config.items() if k != "architectures"}
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        save_hf_model(tmp, config, hf_state, dtype)
        if kind == "gpt2":
            # RoBERTa's table includes the 2 offset rows, BART's max_position_embeddings does not
            max_length = config["max_position_embeddings"] - (POSITION_OFFSET if family == "roberta" else 0)
            report.update(write_gpt2_tokenizer(tmp, family, symbols, encoder_json, vocab_bpe, ckpt_dir / "dict.txt",
                                               max_length))
        else:
            report.update(export_bert.write_tokenizer(tmp, symbols, lowercase, config["max_position_embeddings"]))
        if verify:
            comparison = verify_export(family, kind, model, task, tmp, encoder_json, vocab_bpe,
                                       report.get("lowercase"), sentences)
            report["verify"] = comparison
            if not comparison["passed"]:
                raise VerificationError(f"{out}: --verify failed (nothing written): " + json.dumps(comparison), report)
        (tmp / "export.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def load_fairseq(model_pt: Path) -> tuple[torch.nn.Module, Any, Any, torch.dtype]:
    """The model as fairseq builds it from the checkpoint, its task, model config and stored dtype."""
    from fairseq_defemb import allow_fairseq_checkpoints

    allow_fairseq_checkpoints()
    from fairseq import checkpoint_utils
    from fairseq.models.bart import BARTModel
    from fairseq.models.roberta import RobertaModel

    from fairseq_defemb.surgery.checkpoint import embedding_keys, load_checkpoint

    raw = load_checkpoint(model_pt)["model"]  # memory-mapped: only the dtype is read
    try:
        dtype = raw[embedding_keys(raw)[0]].dtype
    except KeyError:
        raise ConversionError(f"{model_pt}: no BART/RoBERTa token embedding; only BART (bart_*) and RoBERTa "
                              "(roberta_*) checkpoints export") from None
    del raw
    try:
        models, cfg, task = checkpoint_utils.load_model_ensemble_and_task(
            [str(model_pt)], arg_overrides={"data": str(model_pt.parent)})
    except FileNotFoundError as err:
        raise ConversionError(f"{model_pt}: fairseq could not set up the checkpoint's task ({err}); export takes "
                              "pretraining checkpoints (task denoising / masked_lm) with dict.txt beside them") from None
    model = models[0]
    if not isinstance(model, (BARTModel, RobertaModel)) or type(model).__name__ not in ("BARTModel", "RobertaModel"):
        raise ConversionError(f"{model_pt}: architecture {type(model).__name__} ({getattr(cfg.model, '_name', '?')}); "
                              "only stock BART (bart_*) and RoBERTa (roberta_*) checkpoints export")
    return model.float().eval(), task, cfg.model, dtype


def vocabulary_kind(symbols: list[str], dict_path: Path) -> str:
    """"gpt2" when every ordinary symbol is a BPE id, "wordpiece" when the dictionary has ##-pieces."""
    ordinary = [s for s in symbols[len(FAIRSEQ_SPECIALS):] if s != MASK and not FILLER.fullmatch(s)]
    if ordinary and all(s.isdigit() for s in ordinary):
        return "gpt2"
    if any(s.startswith("##") for s in ordinary):
        return "wordpiece"
    bad = next(s for s in ordinary if not s.isdigit())
    raise ConversionError(f"{dict_path}: symbol {bad!r} is neither a GPT-2 BPE id nor part of a WordPiece vocabulary "
                          "(no ##-pieces); only GPT-2 BPE (BART/RoBERTa) and converted WordPiece (BERT) dictionaries export")


def gpt2_files(ckpt_dir: Path, encoder_json: str | Path | None, vocab_bpe: str | Path | None) -> tuple[Path, Path]:
    found = []
    for given, name, flag in ((encoder_json, "encoder.json", "--gpt2-encoder-json"),
                              (vocab_bpe, "vocab.bpe", "--gpt2-vocab-bpe")):
        path = Path(given) if given else ckpt_dir / name
        if not path.is_file():
            raise ConversionError(f"{path}: missing; dict.txt holds GPT-2 BPE ids, so pass {flag} (the file the "
                                  "dictionary was built with; `make install` fetches GPT-2's to .cache/gpt2/) or put "
                                  f"{name} beside model.pt")
        found.append(path)
    return found[0], found[1]


def save_hf_model(tmp: Path, config: dict, hf_state: dict[str, torch.Tensor], dtype: torch.dtype) -> None:
    import transformers

    architecture = config["architectures"][0]
    model_cls = getattr(transformers, architecture)
    model = model_cls(model_cls.config_class(**config))
    result = model.load_state_dict(hf_state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise RuntimeError(f"{architecture}: mapping incomplete; missing {result.missing_keys[:5]}, "
                           f"unexpected {result.unexpected_keys[:5]} (transformers changed its names?)")
    model.to(dtype).save_pretrained(tmp, safe_serialization=True)


def write_gpt2_tokenizer(tmp: Path, family: str, symbols: list[str], encoder_json: Path, vocab_bpe: Path,
                         dict_path: Path, max_length: int) -> dict:
    from transformers import BartTokenizer, RobertaTokenizer

    from fairseq_defemb.convert.gpt2_vocab import write_merges_file

    encoder = read_json_object(encoder_json)
    hf_vocab = fairseq_to_hf(symbols, encoder, dict_path, encoder_json)
    merges = read_merges_file(vocab_bpe)
    (tmp / "vocab.json").write_text(json.dumps(hf_vocab.vocab, ensure_ascii=False), encoding="utf-8")
    write_merges_file(tmp / "merges.txt", merges)
    tokenizer_cls = BartTokenizer if family == "bart" else RobertaTokenizer
    tokenizer = tokenizer_cls(vocab=hf_vocab.vocab, merges=merges, add_prefix_space=False, model_max_length=max_length,
                              **({} if MASK in symbols else {"mask_token": None}))
    tokenizer.save_pretrained(tmp)
    return {"bpe_tokens_outside_dict": hf_vocab.unreachable,
            "fillers": [s for s in symbols if FILLER.fullmatch(s)], "mask_id": symbols.index(MASK) if MASK in symbols else None}


def verify_export(family: str, kind: str, model: torch.nn.Module, task: Any, hf_dir: Path, encoder_json: Path | None,
                  vocab_bpe: Path | None, lowercase: bool | None, sentences: list[str] | None) -> dict:
    """The written directory, loaded offline by transformers' Auto classes, against fairseq."""
    from transformers import AutoModelForMaskedLM, AutoModelForSeq2SeqLM, AutoTokenizer

    from fairseq_defemb.convert.verify_hf import VERIFY_SENTENCES, compare, gpt2_fairseq_ids, wordpiece_fairseq_ids

    dictionary = task.source_dictionary
    if kind == "gpt2":
        from fairseq.data.encoders.gpt2_bpe_utils import get_encoder

        encode = gpt2_fairseq_ids(dictionary, get_encoder(str(encoder_json), str(vocab_bpe)))
    else:
        from preprocess.corpus.tokenizers import WordPieceBackend

        encode = wordpiece_fairseq_ids(dictionary, WordPieceBackend(dictionary, hf_dir / "vocab.txt", lowercase=lowercase))
    auto = AutoModelForSeq2SeqLM if family == "bart" else AutoModelForMaskedLM
    hf_model = auto.from_pretrained(str(hf_dir), local_files_only=True, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(hf_dir), local_files_only=True)
    return compare(family=family if kind == "gpt2" else "roberta", fairseq_model=model, encode=encode,
                   hf_model=hf_model, tokenizer=tokenizer, sentences=sentences or VERIFY_SENTENCES).report()

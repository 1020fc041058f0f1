"""``defemb-convert-hf``'s library entry: a Hugging Face directory -> a stock fairseq directory.

``model_type`` in config.json picks the converter: ``bert`` (fairseq_defemb.convert.hf_bert: a
WordPiece BERT becomes a fairseq RoBERTa), ``roberta`` and ``bart`` (below: byte-level BPE,
fairseq's own layout, every tensor bitwise). A BART/RoBERTa output directory holds
``model.pt`` (trainer format, built by fairseq's own ``denoising``/``masked_lm`` task and
``bart_large``/``roberta_base`` architecture with the source's dimensions, weights loaded
strict), ``dict.txt``, ``encoder.json`` + ``vocab.bpe`` (see fairseq_defemb.convert.gpt2_vocab) and
``conversion.json``. It loads with ``fairseq-train --restore-file``, with
``BARTModel.from_pretrained(out, checkpoint_file="model.pt", gpt2_encoder_json=out/encoder.json,
gpt2_vocab_bpe=out/vocab.bpe)`` and with every tool here.
"""
import json
from pathlib import Path

from fairseq_defemb.atomic_io import atomic_output_dir
from fairseq_defemb.convert import hf_bart, hf_roberta
from fairseq_defemb.convert.gpt2_vocab import hf_to_fairseq, read_hf_tokenizer, write_fairseq_vocabulary
from fairseq_defemb.convert.hf_common import (
    ConversionError, VerificationError, read_json_object, read_safetensors, require_files, sha256,
)

FAMILIES = {"bart": hf_bart, "roberta": hf_roberta}
WEIGHT_PREFIXES = {"bart": "model.", "roberta": "roberta."}  # ...ForConditionalGeneration / ...ForMaskedLM


def convert_hf(*, model_dir: str | Path, out: str | Path, overwrite: bool = False, verify: bool = False,
               sentences: list[str] | None = None) -> dict:
    """Convert a BERT, RoBERTa or BART directory into ``out`` (atomically); return the report.

    ``verify`` runs transformers on the source and fairseq on the result before ``out``
    appears (see fairseq_defemb.convert.verify_hf); the numbers land in ``conversion.json``. For BART and
    RoBERTa a difference beyond tolerance raises VerificationError and writes nothing (BERT's
    comparison only reports: its LayerNorm epsilon differs from fairseq's by design)."""
    model_dir, out = Path(model_dir), Path(out)
    require_files(model_dir, ("config.json",))
    model_type = read_json_object(model_dir / "config.json").get("model_type")
    if model_type == "bert":
        from fairseq_defemb.convert.hf_bert import convert

        return convert(model_dir, out, overwrite, verify=verify, sentences=sentences)
    if model_type not in FAMILIES:
        raise ConversionError(f"{model_dir / 'config.json'}: model_type {model_type!r}; defemb-convert-hf converts "
                              "bert, roberta and bart (BertModel/BertForMaskedLM, RobertaModel/RobertaForMaskedLM, "
                              "BartModel/BartForConditionalGeneration)")
    return convert_gpt2_family(model_dir, out, model_type, overwrite, verify, sentences)


def convert_gpt2_family(model_dir: Path, out: Path, family: str, overwrite: bool, verify: bool,
                        sentences: list[str] | None) -> dict:
    from fairseq_defemb.convert.fairseq_checkpoint import build_pretraining_model, save_model_checkpoint

    module = FAMILIES[family]
    require_files(model_dir, ("config.json", "model.safetensors"))
    config_path, weights_path = model_dir / "config.json", model_dir / "model.safetensors"
    config = read_json_object(config_path)
    module.check_config(config, config_path)
    vocab, merges, added, vocab_path = read_hf_tokenizer(model_dir)
    vocabulary = hf_to_fairseq(vocab, merges, added, vocab_path, config["vocab_size"])
    hf = read_safetensors(weights_path, WEIGHT_PREFIXES[family])
    if out.exists() and not overwrite:  # fail before the (slow) build; atomic_output_dir checks again
        raise FileExistsError(f"{out}: output directory exists; pick a new --out or pass --overwrite")
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        write_fairseq_vocabulary(tmp, vocabulary)
        task_name, arch, options = module.fairseq_options(config)
        task, model, cfg = build_pretraining_model(tmp, task_name, arch, options)
        module.check_built(cfg)
        if len(task.source_dictionary) != config["vocab_size"]:
            raise RuntimeError(f"fairseq built {len(task.source_dictionary)} rows for {config['vocab_size']} HF ids")
        state, notes = module.to_fairseq_state(config, hf, model.state_dict(), weights_path)
        model.load_state_dict(state, strict=True)
        dtype = hf[next(iter(hf))].dtype
        model.to(dtype)  # an fp16/bf16 source stays fp16/bf16 (fairseq casts on load), so the round trip is bitwise
        cfg.task.data = str(out.resolve())  # the final directory, where dict.txt will be
        save_model_checkpoint(model, cfg, tmp / "model.pt")
        report = {
            "source": str(model_dir.resolve()), "family": family, "task": task_name, "arch": arch,
            "source_sha256": {p.name: sha256(p) for p in (config_path, weights_path, vocab_path)},
            "vocabulary": len(task.source_dictionary), "parameters": sum(p.numel() for p in model.parameters()),
            "options": options, "literal_dict_symbols": vocabulary.literal_symbols,
            "dict_txt": ("HF id k = fairseq id k; BPE tokens as their HF id (encoder.json maps token -> that id), "
                         "other tokens literally; counts are rank-derived (vocab_size - id), not corpus counts"),
            "dtype": str(dtype).removeprefix("torch."),
            **notes,
        }
        if verify:
            report["verify"] = verify_conversion(family, model, task, tmp, model_dir, sentences, hf)
            if not report["verify"]["passed"]:
                raise VerificationError(f"{out}: --verify failed (nothing written): {json.dumps(report['verify'])}",
                                        report)
        (tmp / "conversion.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def verify_conversion(family: str, model, task, fairseq_dir: Path, model_dir: Path, sentences: list[str] | None,
                      hf: dict) -> dict:
    """transformers on the source directory against the fairseq model just built."""
    from fairseq.data.encoders.gpt2_bpe_utils import get_encoder
    from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer, BartForConditionalGeneration

    from fairseq_defemb.convert.verify_hf import VERIFY_SENTENCES, compare, gpt2_fairseq_ids

    if family == "bart":  # a BartModel source gets the tied LM head and zero bias fairseq has
        reference_cls = BartForConditionalGeneration
    else:  # without a source head, fairseq's is the identity head: compare hidden states only
        reference_cls = AutoModelForMaskedLM if "lm_head.dense.weight" in hf else AutoModel
    reference = reference_cls.from_pretrained(str(model_dir), local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    bpe = get_encoder(str(fairseq_dir / "encoder.json"), str(fairseq_dir / "vocab.bpe"))
    result = compare(family=family, fairseq_model=model, encode=gpt2_fairseq_ids(task.source_dictionary, bpe),
                     hf_model=reference, tokenizer=tokenizer, sentences=sentences or VERIFY_SENTENCES)
    return result.report()

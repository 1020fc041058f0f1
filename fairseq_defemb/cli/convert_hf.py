"""``defemb-convert-hf``: a Hugging Face BERT, RoBERTa or BART directory -> a stock fairseq directory.

    defemb-convert-hf --model-dir DIR --out OUT/ [--verify] [--overwrite]

config.json's model_type picks the conversion.

RoBERTa (RobertaForMaskedLM/RobertaModel) and BART (BartForConditionalGeneration/BartModel), any size
  DIR holds config.json, model.safetensors and the byte-level BPE tokenizer (vocab.json +
  merges.txt, or tokenizer.json). OUT gets model.pt (fairseq's masked_lm/roberta_base or
  denoising/bart_large with the source's dimensions, every tensor bitwise), dict.txt (HF id k =
  fairseq id k: BPE tokens as ids of the encoder.json written beside it, madeupword fillers
  literally, <mask> appended last by the task), encoder.json + vocab.bpe (GPT-2 BPE files for
  fairseq's --bpe gpt2) and conversion.json. RoBERTa's token-type row 0 is folded into the
  positions when non-zero; BART's final_logits_bias must be zero (fairseq has no output bias).
  --verify runs transformers on DIR and fairseq on OUT: token ids, hidden states, logits and
  (BART) greedy and beam-4 generations (fairseq_defemb.convert.verify_hf); beyond tolerance (1e-4) the
  exit code is 1 and nothing is written.

BERT (BertModel/BertForMaskedLM) -> a fairseq RoBERTa
  DIR holds config.json, model.safetensors and vocab.txt. OUT gets model.pt (built by fairseq's
  masked_lm/roberta_base with the BERT dimensions, weights loaded strictly), dict.txt (vocab.txt's
  WordPiece strings in order, BERT's specials mapped to fairseq's) and conversion.json. --verify
  compares the final hidden states with transformers' BertModel at BERT's LayerNorm epsilon and at
  fairseq's. How every string and tensor is mapped: the docstring of fairseq_defemb.convert.hf_bert.
"""
import argparse
import json
import sys
from pathlib import Path
from typing import Callable

from fairseq_defemb.cli.logging_setup import configure_cli_logging

DESCRIPTION = __doc__


def verify_lines(verify: dict) -> list[str]:
    """The --verify comparison of fairseq_defemb.convert.verify_hf (also printed by defemb-export-hf)."""
    lines = [f"  verify on {verify['sentences']} sentences: token ids "
             f"{'identical' if not verify['token_mismatches'] else 'DIFFER: ' + verify['token_mismatches'][0]}"]
    if verify["too_long"]:
        lines.append(f"  {len(verify['too_long'])} sentences longer than the model's positions, not run")
    diffs = [f"hidden {verify['max_abs_hidden']:.2e}"]
    if verify["max_abs_encoder"] is not None:
        diffs.insert(0, f"encoder {verify['max_abs_encoder']:.2e}")
    if verify["max_abs_logits"] is not None:
        diffs.append(f"logits {verify['max_abs_logits']:.2e}")
    lines.append(f"  max |fairseq - transformers|: {', '.join(diffs)} (tolerance {verify['tolerance']:g}; "
                 f"largest |h| {verify['largest_hidden_value']:.2f})")
    if verify["greedy_identical"] is not None:
        lines.append(f"  generation identical: greedy {verify['greedy_identical']}/{verify['sentences']}, "
                     f"beam 4 {verify['beam4_identical']}/{verify['sentences']}")
    lines.append("  verify: " + ("passed" if verify["passed"] else "FAILED"))
    return lines


def run_conversion(prog: str, convert: Callable[[], dict], summarize: Callable[[dict], str]) -> int:
    """``convert()`` with the conversion tools' exits: 0 and ``summarize(report)`` printed; 1 after a
    failed --verify (nothing was written), with what differed; 2 on a conversion error or an OSError
    (an existing output, a full disk)."""
    from fairseq_defemb.convert.hf_common import ConversionError, VerificationError

    try:
        report = convert()
    except VerificationError as err:
        print("\n".join(verify_lines(err.report["verify"])), file=sys.stderr)
        print(f"{prog}: error: --verify failed, nothing written; details: {json.dumps(err.report['verify'])}",
              file=sys.stderr)
        return 1
    except (ConversionError, OSError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    print(summarize(report))
    return 0


def summary(report: dict, out: str | Path) -> str:
    from fairseq_defemb.convert.hf_common import FAIRSEQ_LAYER_NORM_EPS

    if "family" in report:  # RoBERTa / BART
        lines = [f"defemb-convert-hf: {report['source']} -> {out}",
                 f"  {report['family']}: fairseq --task {report['task']} --arch {report['arch']}, vocabulary "
                 f"{report['vocabulary']:,}, {report['parameters']:,} parameters"]
        if "lm_head" in report:
            lines.append(f"  lm_head: {report['lm_head']}")
        return "\n".join(lines + (verify_lines(report["verify"]) if "verify" in report else []))
    lines = [
        f"defemb-convert-hf: {report['source']} -> {out}",
        f"  {report['layers']} layers, hidden {report['hidden']}, {report['heads']} heads, ffn {report['ffn']}, "
        f"{report['max_positions']} positions, {report['activation_fn']}",
        f"  vocabulary {report['vocabulary']:,} symbols, {report['parameters']:,} parameters",
        f"  lm_head: {report['lm_head']}",
    ]
    if report["duplicate_tokens"] or report["whitespace_or_empty_tokens"]:
        lines.append(f"  vocab.txt: {len(report['duplicate_tokens'])} repeated tokens (#fairseq:overwrite), "
                     f"{len(report['whitespace_or_empty_tokens'])} whitespace/empty tokens written verbatim")
    v = report
    if "verify_skipped" in v:
        lines.append(f"  verify skipped: {v['verify_skipped']}")
    elif "max_abs_difference" in v:
        lines.append(f"  max |h_fairseq - h_transformers| = {v['max_abs_difference']:.2e} "
                     f"(LayerNorm eps {report['hf_layer_norm_eps']:g} vs fairseq's {FAIRSEQ_LAYER_NORM_EPS:g}); "
                     f"{v['max_abs_difference_same_eps']:.2e} with the reference at eps {FAIRSEQ_LAYER_NORM_EPS:g}")
        if v["max_abs_logit_difference"] is not None:
            lines.append(f"  max |logits difference| = {v['max_abs_logit_difference']:.2e} "
                         f"({v['max_abs_logit_difference_same_eps']:.2e} at the same eps)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="defemb-convert-hf", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", required=True,
                        help="Hugging Face BERT, RoBERTa or BART directory (config.json, model.safetensors, and "
                             "vocab.txt or vocab.json + merges.txt / tokenizer.json)")
    parser.add_argument("--out", required=True, help="output fairseq checkpoint directory (written atomically)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--verify", action="store_true",
                        help="run transformers on --model-dir and fairseq on --out and report the differences "
                             "(needs transformers)")
    args = parser.parse_args(argv)
    configure_cli_logging()
    from fairseq_defemb.convert.hf_import import convert_hf

    return run_conversion(
        "defemb-convert-hf",
        lambda: convert_hf(model_dir=args.model_dir, out=args.out, overwrite=args.overwrite, verify=args.verify),
        lambda report: summary(report, args.out))


if __name__ == "__main__":
    sys.exit(main())

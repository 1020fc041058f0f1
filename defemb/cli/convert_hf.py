"""``defemb-convert-hf``: a BERT-family model in Hugging Face layout -> a stock fairseq RoBERTa.

    defemb-convert-hf --model-dir DIR --out minilm-fairseq/ [--verify] [--overwrite]

DIR holds ``config.json``, ``model.safetensors`` and ``vocab.txt``. The output directory
(``model.pt`` + ``dict.txt`` + ``conversion.json``), written atomically, loads with
``RobertaModel.from_pretrained(out, checkpoint_file="model.pt")``,
``checkpoint_utils.load_checkpoint_to_cpu`` and ``fairseq-train --restore-file`` like
``roberta.base``. The fairseq model is built by fairseq itself (``--task masked_lm --arch
roberta_base`` with the BERT dimensions) and the converted weights load with strict=True.

dict.txt
  The WordPiece strings of vocab.txt in vocab.txt order (vocab.txt is read the way
  transformers' BertTokenizer reads it: one token per line, only the newline removed),
  except BERT's specials, which map to fairseq's: [CLS] -> <s>, [PAD] -> <pad>,
  [SEP] -> </s>, [UNK] -> <unk> (ids 0-3) and [MASK] -> <mask>, which fairseq's masked_lm
  appends last. So vocab.txt line k (HF id k) lands at fairseq id 4 + (number of
  non-special lines before it). The count column is rank-derived (len(vocab) - rank,
  descending as fairseq expects), NOT corpus counts: vocab.txt has none.
  Awkward strings are handled explicitly: tokens containing whitespace (or empty) are
  written verbatim, which fairseq's ``<token> <count>`` format (split at the LAST space)
  reads back intact; a token repeated in vocab.txt keeps its own row and gets fairseq's
  ``#fairseq:overwrite`` flag, so the string resolves to its last occurrence in both
  fairseq and BertTokenizer; a token literally equal to a fairseq special (<s>, <pad>,
  </s>, <unk>, <mask>) or a repeated BERT special is an error naming vocab.txt:line.
  dict.txt is reloaded after writing and checked row by row.

Weights
  * word embeddings are permuted into fairseq ids as above;
  * token-type embedding 0 (single-segment input) is added to every position embedding;
    HF position i is fairseq row i + 2 (fairseq offsets learned positions by
    padding_idx + 1). Row 0 is never indexed; row 1 is what <pad> tokens get: both zero;
  * embeddings.LayerNorm -> layernorm_embedding; no embedding scaling; post-LN layers
    (q/k/v/out_proj, self_attn_layer_norm, fc1, fc2, final_layer_norm);
  * LM head: a BertForMaskedLM head (``cls.predictions.*``) is converted. Without one
    (sentence-transformers checkpoints) it is initialized deterministically: dense =
    identity with zero bias, LayerNorm gamma 1 / beta 0, output bias 0, output weight tied
    to the embeddings (as always in fairseq RoBERTa);
  * dropped: the pooler (fairseq RoBERTa has none) and the NSP head.

LayerNorm epsilon
  BERT uses 1e-12, fairseq's LayerNorm 1e-5 and does not expose it. ``--verify`` runs
  transformers' BertModel on a few sentences twice, at BERT's epsilon and at 1e-5, and
  reports both maximum absolute differences of the final hidden states: the second
  isolates the conversion (float rounding), the first adds the epsilon effect
  (about 1e-3 on all-MiniLM-L6-v2).
"""
import argparse
import sys
from pathlib import Path

from defemb.cli.logging_setup import configure_cli_logging
from defemb.convert.hf_bert import FAIRSEQ_LAYER_NORM_EPS, ConversionError, convert

DESCRIPTION = __doc__


def summary(report: dict, out: str | Path) -> str:
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
                        help="Hugging Face BERT directory (config.json, model.safetensors, vocab.txt)")
    parser.add_argument("--out", required=True, help="output fairseq checkpoint directory (written atomically)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--verify", action="store_true",
                        help="compare final hidden states with transformers' BertModel (needs transformers)")
    args = parser.parse_args(argv)
    configure_cli_logging()
    try:
        report = convert(args.model_dir, args.out, args.overwrite, verify=args.verify)
    except (ConversionError, OSError) as err:  # OSError: existing output, disk full
        print(f"defemb-convert-hf: error: {err}", file=sys.stderr)
        return 2
    print(summary(report, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

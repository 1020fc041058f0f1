"""``defemb-export-hf``: a fairseq BART or RoBERTa checkpoint directory -> a transformers directory.

    defemb-export-hf --checkpoint bart.large.defemb/ --out bart-large-defemb-hf/ [--verify]
        [--gpt2-encoder-json encoder.json --gpt2-vocab-bpe vocab.bpe] [--overwrite]

--checkpoint is a directory with model.pt and dict.txt (stock, converted by defemb-convert-hf or
written by defemb-surgery; any size; fp32 or fp16). --out gets config.json, model.safetensors (the
checkpoint's dtype), the tokenizer (vocab.json in the fairseq dictionary's order + merges.txt,
tokenizer.json, tokenizer_config.json; <mask> and madeupword fillers keep their rows),
generation_config.json (BART) and export.json; AutoModelForSeq2SeqLM / AutoModelForMaskedLM /
AutoTokenizer.from_pretrained(OUT) load it offline. Tied embeddings stay tied, positions keep
fairseq's offset of 2, BART's final_logits_bias is zero. A RoBERTa with a WordPiece dictionary (a
BERT converted by defemb-convert-hf) exports to BertForMaskedLM + BertTokenizer (LayerNorm eps
1e-5, fairseq's). GPT-2 BPE files: the options, else encoder.json/vocab.bpe beside model.pt.

--verify loads OUT with transformers (before it appears) and runs the same sentences through both:
identical token ids, hidden states and logits within 1e-4 (fp32), BART's greedy and beam-4
outputs identical; on failure nothing is written and the exit code is 1.

Exit codes: 0 written, 1 --verify failed, 2 bad input (the message names the file and the fix).
"""
import argparse
import sys

from fairseq_defemb.cli.convert_hf import run_conversion, verify_lines
from fairseq_defemb.cli.logging_setup import configure_cli_logging


def summary(report: dict, out: str) -> str:
    config = report["config"]
    size = (f"{config['encoder_layers']} + {config['decoder_layers']} layers, d_model {config['d_model']}"
            if report["family"] == "bart" else f"{config['num_hidden_layers']} layers, hidden {config['hidden_size']}")
    lines = [f"defemb-export-hf: {report['source']} -> {out}",
             f"  {report['family']} ({size}), {report['vocabulary']:,} rows, {report['dtype']}, tokenizer {report['tokenizer']}"]
    if report["dropped"]:
        lines.append(f"  not exported: {', '.join(report['dropped'])}")
    if report.get("bpe_tokens_outside_dict"):
        lines.append(f"  {report['bpe_tokens_outside_dict']} BPE tokens outside dict.txt map to <unk>, as in fairseq")
    return "\n".join(lines + (verify_lines(report["verify"]) if "verify" in report else []))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="defemb-export-hf", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="fairseq checkpoint directory (model.pt + dict.txt)")
    parser.add_argument("--out", required=True, help="transformers output directory (written atomically)")
    parser.add_argument("--gpt2-encoder-json", help="GPT-2 encoder.json of the dictionary (default: beside model.pt)")
    parser.add_argument("--gpt2-vocab-bpe", help="GPT-2 vocab.bpe of the dictionary (default: beside model.pt)")
    parser.add_argument("--lowercase", choices=("auto", "yes", "no"), default="auto",
                        help="WordPiece dictionaries only: BertTokenizer's do_lower_case (auto: yes iff under 1%% of "
                             "the symbols have an upper-case letter)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--verify", action="store_true",
                        help="compare fairseq and the written transformers model before --out appears")
    args = parser.parse_args(argv)
    configure_cli_logging()
    from fairseq_defemb.convert.export_hf import export_hf

    return run_conversion(
        "defemb-export-hf",
        lambda: export_hf(checkpoint=args.checkpoint, out=args.out, gpt2_encoder_json=args.gpt2_encoder_json,
                          gpt2_vocab_bpe=args.gpt2_vocab_bpe, overwrite=args.overwrite, verify=args.verify,
                          lowercase={"auto": None, "yes": True, "no": False}[args.lowercase]),
        lambda report: summary(report, args.out))

if __name__ == "__main__":
    sys.exit(main())

"""``defemb-add-tokens``: new tokens for a model, their rows initialised from their definitions.

    defemb-add-tokens --hf-model all-MiniLM-L6-v2 --words words.tsv --init defemb --out minilm-new
    defemb-add-tokens --checkpoint bart.large --words words.tsv --init defemb \\
        --definition-model defemb-ckpt/checkpoint_best.pt --out bart.large.new
    defemb-bpe-encode --encoder-json bart.large.new/encoder.json --vocab-bpe bart.large.new/vocab.bpe \\
        --inputs train.txt --outputs train.bpe          # where multiprocessing_bpe_encoder ran
    fairseq-generate ... --bpe gpt2 --gpt2-encoder-json bart.large.new/encoder.json
    defemb-add-tokens --hf-model roberta-dir --words words.tsv --init description-mean --out roberta-new

WORDS.tsv: ``word<TAB>pos<TAB>definition``, one line per definition (several per word allowed).
--init: ``defemb`` (a definition model, trained or fitted, over the model's dict.txt: the
word's prompts built with defemb-corpus's template, predicted with defemb-predict's code;
without --definition-model, the recommended one is built for the model once and cached),
``mean`` (mean of all rows), ``description-mean`` (mean row of each definition's tokens, averaged),
``subwords`` (mean row of the pieces the tokenizer gives the word today).
Writes OUT atomically with add_tokens.json: words, ids, definitions used, norm and nearest
existing neighbours of every new row.
"""
import argparse
import json
import logging
import sys

from fairseq_defemb.cli.logging_setup import configure_cli_logging
from fairseq_defemb.options import DEVICES, INITS, resolve_device
from fairseq_defemb.recipes import CPU_BUDGET

DESCRIPTION = __doc__.split("\n", 1)[1]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="defemb-add-tokens", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", help="fairseq checkpoint directory (model.pt + dict.txt; GPT-2 BPE: BART, RoBERTa)")
    model.add_argument("--hf-model", help="transformers model directory (BART, RoBERTa, BERT: model + tokenizer)")
    p.add_argument("--words", required=True, help="TSV: word<TAB>pos<TAB>definition, one line per definition")
    p.add_argument("--init", required=True, choices=INITS, help="how the new rows are initialised")
    p.add_argument("--definition-model", help="--init defemb: a checkpoint defemb-predict accepts (fairseq-train "
                   "--task definition_cloze, or defemb-fit), over the model's dict.txt; default: the recommended "
                   "definition model for this model, built once (corpus, least-squares W, training) and cached")
    p.add_argument("--definition-corpus", help="--init defemb with --definition-model: the corpus that model was "
                   "trained on, whose tokens centre its rows (default: the corpus its checkpoint records)")
    p.add_argument("--definition-updates", type=int, default=CPU_BUDGET.updates,
                   help=f"training updates of a definition model built here (default {CPU_BUDGET.updates}: minutes "
                   "for a small encoder on a CPU, hours for bart.large; 0: the least-squares W alone, no training)")
    p.add_argument("--workers", type=int, default=2, help="processes tokenizing a definition corpus built here (default 2)")
    p.add_argument("--cache-dir", help="where built definition models and their corpora are kept (default: "
                   "$DEFEMB_CACHE, else $XDG_CACHE_HOME/fairseq-defemb, else ~/.cache/fairseq-defemb)")
    p.add_argument("--out", required=True, help="output directory (written atomically; never the input)")
    p.add_argument("--replace", action="store_true",
                   help="a word already in the vocabulary gets its row(s) re-initialised (default: an error)")
    p.add_argument("--gpt2-encoder-json", help="encoder.json of the checkpoint (default: beside model.pt)")
    p.add_argument("--gpt2-vocab-bpe", help="vocab.bpe of the checkpoint (default: beside model.pt)")
    p.add_argument("--max-prompt-tokens", type=int, default=256, help="longest prompt; longer definitions are cut (default 256)")
    p.add_argument("--neighbours", type=int, default=5, help="nearest existing tokens reported per new row (default 5)")
    p.add_argument("--device", choices=DEVICES, default="auto", help="--init defemb: auto (default: cuda if there is one), cpu or cuda")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def summary(report: dict) -> str:
    lines = [f"{len({w['word'] for w in report['words']})} word(s), {len(report['words'])} row(s) "
             f"({sum(w['replaced'] for w in report['words'])} re-initialised), --init {report['init']}; "
             f"rows {report['rows_before']} -> {report['rows_after']}; existing rows' mean norm "
             f"{report['existing_row_norm']['mean']:.3f}"]
    for w in report["words"]:
        near = ", ".join(f"{n['token']!r} {n['cosine']:.2f}" for n in w["neighbours"])
        lines.append(f"  {w['form']!r:>16} id {w['id']:<6} norm {w['norm']:.3f}  {w['definitions']} def.  near: {near}")
    for reason, entry in report["skipped_lines"].items():
        lines.append(f"  skipped {entry['count']} line(s): {reason} (first: {', '.join(entry['first'])})")
    for form in report.get("mean_row_fallbacks", []):
        lines.append(f"  {form!r}: nothing to average, set to the mean row")
    built = report.get("definition_model_built")
    if built:
        steps = ", ".join(f"{step} {seconds if isinstance(seconds, str) else f'{seconds:.0f} s'}"
                          for step, seconds in built["steps"].items())
        lines.append(f"  definition model: {report['definition_model']} ({built['recipe']}, {built['updates']} updates; "
                     f"{steps})")
    lines.append(f"  -> {report['out']} (report: {report['out']}/add_tokens.json)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_cli_logging(logging.WARNING)
    if args.definition_updates < 0:
        print("defemb-add-tokens: error: --definition-updates must be >= 0", file=sys.stderr)
        return 2
    common = dict(words=args.words, init=args.init, out=args.out, definition_model=args.definition_model,
                  definition_corpus=args.definition_corpus,
                  replace=args.replace, max_prompt_tokens=args.max_prompt_tokens, neighbours=args.neighbours,
                  device=resolve_device(args.device), overwrite=args.overwrite, progress=not args.no_progress,
                  definition_updates=args.definition_updates, cache_dir=args.cache_dir, workers=args.workers,
                  say=lambda line: print(f"defemb-add-tokens: {line}", flush=True))
    try:
        if args.checkpoint:
            from fairseq_defemb.add_tokens.fairseq_model import add_tokens_fairseq

            report = add_tokens_fairseq(checkpoint=args.checkpoint, gpt2_encoder_json=args.gpt2_encoder_json,
                                        gpt2_vocab_bpe=args.gpt2_vocab_bpe, **common)
        else:
            from fairseq_defemb.add_tokens.hf_model import add_tokens_hf

            report = add_tokens_hf(hf_model=args.hf_model, **common)
    except (OSError, ValueError) as err:  # AddTokensError is a ValueError
        print(f"defemb-add-tokens: error: {err}", file=sys.stderr)
        return 2
    print(summary(report))
    print(json.dumps({"words": [{k: w[k] for k in ("form", "id", "norm")} for w in report["words"]]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

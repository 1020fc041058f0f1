"""``defemb-fit``: a definition model without training, the frozen PLM plus a closed-form W.

One pass of the frozen pretrained RoBERTa/BART over a sample of the corpus's training prompts
(read as defemb-predict reads them), W by ridge regression from the read states to the
pretrained embedding rows (bias-free as in Eq. 4; lambda chosen on the validation split unless
given). Writes OUT, a definition_cloze checkpoint that ``defemb-predict --checkpoint OUT``
reads like a trained one, and OUT's .json report (validation Eq. 5 loss and cosine for the
mean target row, the random W and the fitted W).

    defemb-fit --pretrained-checkpoint roberta.base/model.pt --corpus defs-bin --out fit.pt
    defemb-predict --checkpoint fit.pt --corpus defs-bin --out defemb.pt
"""
import argparse
import json
import logging
import sys

from fairseq_defemb.cli.logging_setup import configure_cli_logging
from fairseq_defemb.options import DEVICES, FIT_POSITIONS, PREDICTION_MEANS, PROJECTION_INPUTS, resolve_device

DESCRIPTION = __doc__.split("\n", 1)[1]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="defemb-fit", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pretrained-checkpoint", required=True, help="stock fairseq RoBERTa or BART model.pt (its dict.txt = the corpus's)")
    p.add_argument("--corpus", required=True, help="definition corpus directory (defemb-corpus --out)")
    p.add_argument("--out", required=True, help="checkpoint to write (e.g. fit.pt; the report goes to fit.json), atomically")
    p.add_argument("--samples", type=int, default=10000, help="training prompts read for the fit (default 10000; 0: all)")
    p.add_argument("--valid-samples", type=int, default=0, help="validation prompts for lambda and the report (default 0: all)")
    p.add_argument("--lambda", dest="lam", type=float, default=None,
                   help="ridge lambda (default: the best of 0.01, 0.1, ..., 10000 on the validation split)")
    p.add_argument("--mask-headword-everywhere", action="store_true",
                   help="also mask the headword's ids outside its variant spans (stored in the checkpoint: "
                   "defemb-predict then does the same)")
    p.add_argument("--skip-definition-only-copies", action="store_true",
                   help="fit on the corpus's paper prompts alone, without its definition-only copies (stored in the "
                   "checkpoint, as definition_cloze --skip-definition-only-copies)")
    p.add_argument("--exclude-token-ids", default=None,
                   help="leave prompts defining these ids out of the fit and of lambda's choice (file or comma list): "
                   "held-out tokens")
    p.add_argument("--positions", choices=FIT_POSITIONS, default="headword",
                   help="states W is fitted on: 'headword' (default): prompts whose headword is one subword, read "
                   "there once (a W for whole tokens, 5x cheaper per prompt, the measured best: "
                   "docs/definition-model.md), or 'every' headword subword (what training's targets are)")
    p.add_argument("--projection-input", choices=PROJECTION_INPUTS, default="state+prompt-mean",
                   help="what W reads (stored in the checkpoint; a training run warm-started from it needs the same "
                   "definition_cloze --projection-input): 'state+prompt-mean' (default, the measured best: "
                   "docs/definition-model.md) the read state beside the mean of the last layer over the prompt, or "
                   "'state' the read state alone (Eq. 4)")
    p.add_argument("--prediction-mean", choices=PREDICTION_MEANS, default="raw",
                   help="how defemb-predict centres this checkpoint's rows (definition_cloze --prediction-mean): 'raw' "
                   "(default, the measured best for a fitted W alone: centring lost MRR on both make eval seeds with "
                   "--projection-input state, and gained on one seed and lost on the other with state+prompt-mean, "
                   "docs/definition-model.md), or 'rows'")
    p.add_argument("--seed", type=int, default=1, help="seed of the prompt samples and of the reference random W")
    p.add_argument("--max-tokens", type=int, default=8192, help="tokens per batch of the read pass (default 8192)")
    p.add_argument("--batch-size", type=int, default=None, help="at most this many items per batch")
    p.add_argument("--device", choices=DEVICES, default="auto", help="auto (default: cuda if there is one), cpu or cuda")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def summary(report: dict) -> str:
    valid = report["valid"]
    lines = [f"W fitted on {report['fit']['states']:,} read states of {report['fit']['prompts']:,} training prompts, "
             f"lambda {report['lambda']:g} ({'chosen on valid' if report['lambda_source'] == 'valid' else 'given'}), "
             f"read {report['seconds']['read']:.1f}s, solve {report['seconds']['solve']:.1f}s"]
    if "fitted_W" in valid:
        lines.append(f"valid ({valid['prompts']:,} prompts, {valid['states']:,} states), Eq. 5 loss / cosine:")
        lines += [f"  {name:<15} {valid[key]['loss']:.4f} / {valid[key]['cosine']:.3f}"
                  for name, key in (("mean target row", "mean_row"), ("random W", "random_W"), ("fitted W", "fitted_W"))]
    lines.append(f"-> {report['checkpoint']} (defemb-predict --checkpoint {report['checkpoint']} --corpus {report['corpus']}; "
                 f"to train from this W: fairseq-train ... --task definition_cloze --projection-init-from {report['checkpoint']})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_cli_logging(logging.WARNING)
    if args.samples < 0 or args.valid_samples < 0 or (args.lam is not None and args.lam < 0):
        print("defemb-fit: error: --samples, --valid-samples and --lambda must be >= 0", file=sys.stderr)
        return 2
    from fairseq_defemb.fit import fit_definition_model
    from fairseq_defemb.predict import read_token_ids

    try:
        report = fit_definition_model(
            pretrained_checkpoint=args.pretrained_checkpoint, corpus=args.corpus, out=args.out,
            samples=args.samples or None, valid_samples=args.valid_samples or None, lam=args.lam,
            mask_headword_everywhere=args.mask_headword_everywhere,
            skip_definition_only_copies=args.skip_definition_only_copies, projection_input=args.projection_input,
            prediction_mean=args.prediction_mean, seed=args.seed, max_tokens=args.max_tokens,
            batch_size=args.batch_size, positions=args.positions,
            exclude_token_ids=read_token_ids(args.exclude_token_ids, "--exclude-token-ids") if args.exclude_token_ids else None,
            device=resolve_device(args.device), progress=not args.no_progress)
    except (OSError, ValueError) as err:  # OSError: a missing input, or an output that could not be written
        print(f"defemb-fit: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps({k: report[k] for k in ("lambda", "fit", "valid")}))
    print(summary(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

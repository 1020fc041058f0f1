"""``defemb-predict``: the command over :func:`fairseq_defemb.predict.predict_embeddings`.

Runs the trained DefinitionEMB model over every (token, definition, variant)
occurrence of a definition corpus, deterministically (one ``<mask>`` at a time for
encoder-only models, one teacher-forced decoder pass per prompt for BART), in
length-bucketed batches, and averages the predictions per token id.
"""
import argparse
import json
import logging
import sys

from fairseq_defemb.cli.logging_setup import configure_cli_logging
from fairseq_defemb.options import AVERAGES, DEVICES, PREDICTION_MEANS, PREDICTION_NORMS, resolve_device

DESCRIPTION = __doc__.split("\n", 1)[1]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="defemb-predict", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="DefinitionEMB checkpoint (checkpoints/checkpoint_best.pt)")
    parser.add_argument("--corpus", required=True, help="definition corpus directory (defemb-corpus --out)")
    parser.add_argument("--out", required=True, help="output file (.pt), written atomically")
    parser.add_argument("--splits", default="train,valid", help="corpus splits to predict over (default: train,valid)")
    parser.add_argument("--max-tokens", type=int, default=8192, help="tokens per batch (default: 8192)")
    parser.add_argument("--batch-size", type=int, default=None, help="at most this many items per batch")
    parser.add_argument("--token-ids", default=None,
                        help="predict only these ids (file, one per line, or comma list): e.g. surgery's candidates")
    parser.add_argument(
        "--average", choices=AVERAGES, default="definitions",
        help="how a token's predictions are combined. 'definitions' (default): the mean over its definitions of "
        "the mean within each, so every definition counts once, however many of its variants (original, "
        "lower-case, capitalized, quoted) contain the token. The paper's unit is the definition: Eq. 5 averages "
        "within a definition and sums over definitions, and at inference 'the same definitions were reused to "
        "load the corresponding definition embeddings' (Section 5.1). 'occurrences': the mean over every "
        "occurrence, which weights a definition by how many of its variants contain the token")
    parser.add_argument("--mask-headword-everywhere", action="store_true", default=None,
                        help="also mask the headword's ids outside its variant spans (e.g. inside its definition); "
                        "default: as the checkpoint was trained (definition_cloze --mask-headword-everywhere)")
    parser.add_argument("--prediction-norm", choices=PREDICTION_NORMS, default=None,
                        help="'rows': every embedding rescaled to the mean norm of the pretrained rows; 'raw': W h as "
                        "computed; default: as the checkpoint was trained (definition_cloze --prediction-norm)")
    parser.add_argument("--prediction-mean", choices=PREDICTION_MEANS, default=None,
                        help="'rows': embeddings centred so that the model's mean prediction over 300 tokens of the "
                        "corpus's valid split (train when it has none) becomes the pretrained rows' mean; 'raw': W h "
                        "as computed; default: as the checkpoint was trained (definition_cloze --prediction-mean)")
    parser.add_argument("--device", choices=DEVICES, default="auto", help="auto (default: cuda if there is one), cpu or cuda")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_cli_logging(logging.WARNING)
    from fairseq_defemb.predict import predict_embeddings, read_token_ids

    try:
        token_ids = read_token_ids(args.token_ids) if args.token_ids else None
        coverage = predict_embeddings(
            args.checkpoint, args.corpus, args.out, splits=tuple(s for s in args.splits.split(",") if s),
            max_tokens=args.max_tokens, batch_size=args.batch_size, token_ids=token_ids, device=resolve_device(args.device),
            mask_headword_everywhere=args.mask_headword_everywhere, prediction_norm=args.prediction_norm,
            prediction_mean=args.prediction_mean,
            progress=not args.no_progress,
            average=args.average)
    except (OSError, ValueError) as err:  # OSError: unreadable input, or disk full while writing
        print(f"defemb-predict: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(coverage))
    print(f"predicted {coverage['predicted_tokens']} of {coverage['vocabulary']} tokens "
          f"({100 * coverage['share']:.1f}%) in {coverage['seconds']:.1f}s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``defemb-analyze``: the paper's measurements of embedding geometry, as one tool.

    defemb-analyze --checkpoint A/model.pt [--compare B/model.pt] --dict dict.txt --out report/
        isotropy I(E) per frequency group (Table 23; the paper's convention, numpy.linalg.eig's
        signs, beside the sign-invariant one), numeric Max Difference (Section 6.3),
        nearest neighbours, drift between checkpoints and 2D projections (Figures 2, 6).
        Writes report.json, summary.md and projection.png into --out, atomically.
    defemb-analyze rouge --hyp H --ref R
        ROUGE-1/2/L F1 as fairseq's BART example reports it (files2rouge: ROUGE-1.5.5.pl
        -c 95 -r 1000 -n 2 -a on PTB-tokenized, lower-cased text, run through sacrerouge) and
        rouge-score side by side, each with a signature of its conventions
    defemb-analyze significance --ref R --baseline H_seed1,H_seed2 --system S_seed1,S_seed2
        paired bootstrap (Koehn 2004) over the seeds pooled, 1,000 seeded resamples; per-summary
        ROUGE-1.5.5 F1 (sacrerouge; rouge-score where it cannot run), or 0/1 correctness with
        --metric accuracy (GLUE: one label per line)
    defemb-analyze rare-subset --data-bin DIR [--threshold 40000 --min-fraction 0.05]
        the rare-token test subset of Appendix B.2 from a fairseq-binarized dataset
    defemb-analyze reconstruction --checkpoint model.pt --corpus DEFS --predictions DefinitionEMB=p.pt --out DIR
        held-out tokens of a `defemb-corpus --holdout` corpus against their true rows: cosine, squared
        distance, rank of the true row among all rows (MRR, hits@1/10, median) per frequency group, for
        the mean row, definition mean, subword and random initialisers and each prediction file;
        paired bootstrap of each prediction against the best baseline. Writes report.json, summary.md.

Python: ``analyze_matrices(matrices, dictionary, ...)`` returns the report dict in-process.
"""
import argparse
import json
import sys

from fairseq_defemb.analysis.rouge import BACKENDS
from fairseq_defemb.cli.logging_setup import configure_cli_logging

DESCRIPTION = __doc__
MODES = ("rouge", "significance", "rare-subset", "reconstruction")


def geometry_main(args) -> int:
    from fairseq_defemb.analysis.report import analyze_checkpoints, summary_markdown

    named = named_paths(args.embeddings, "--embeddings")
    report = analyze_checkpoints(args.checkpoint, args.out, dict_path=args.dict, compare=args.compare, embeddings=named,
                                 gpt2_encoder_json=args.gpt2_encoder_json, neighbours_of=args.neighbours_of or [],
                                 k=args.k, metric=args.metric, overwrite=args.overwrite, progress=not args.no_progress)
    print(summary_markdown(report))
    print(f"-> {args.out} (report.json, summary.md, projection.png)")
    return 0


def rouge_main(args) -> int:
    from fairseq_defemb.analysis.report import score_rouge

    result = score_rouge(args.hyp, args.ref, tokenize=not args.no_tokenize, stemming=args.stemming,
                         rouge_root=args.rouge_root)
    print(json.dumps(result, indent=2))
    return 0


def significance_main(args) -> int:
    from fairseq_defemb.analysis.report import significance_test

    result = significance_test(args.ref, args.baseline.split(","), args.system.split(","), metric=args.metric,
                               tokenize=not args.no_tokenize, stemming=args.stemming, scorer=args.scorer,
                               rouge_root=args.rouge_root, resamples=args.resamples, seed=args.seed)
    print(json.dumps(result, indent=2))
    return 0


def rare_subset_main(args) -> int:
    from fairseq_defemb.analysis.rare_subset import rare_subset_binarized

    chosen = rare_subset_binarized(args.data_bin, args.test_split, args.train_splits, args.threshold, args.min_fraction)
    text = "".join(f"{i}\n" for i in chosen)
    if args.output:
        from fairseq_defemb.atomic_io import write_text

        write_text(args.output, text)
    else:
        sys.stdout.write(text)
    print(f"{len(chosen)} test pairs kept", file=sys.stderr)
    return 0


def add_rouge_root(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rouge-root", help="directory of an executable ROUGE-1.5.5.pl and its data/ "
                                        "(default: the .cache/ROUGE-1.5.5 that `make install` prepares)")


def named_paths(specs: list[str] | None, option: str) -> dict[str, str]:
    named = {}
    for spec in specs or []:
        name, _, path = spec.partition("=")
        if not path or not name:
            raise ValueError(f"{option} {spec}: expected NAME=PATH")
        named[name] = path
    return named


def reconstruction_main(args) -> int:
    from fairseq_defemb.analysis.reconstruction import analyze_reconstruction, reconstruction_markdown

    report = analyze_reconstruction(
        args.checkpoint, args.corpus, args.out, predictions=named_paths(args.predictions, "--predictions"),
        baseline_predictions=named_paths(args.baseline_predictions, "--baseline-predictions"), system=args.system,
        tokenizer_files={k: getattr(args, k) for k in ("wordpiece_vocab", "gpt2_encoder_json", "gpt2_vocab_bpe")},
        seed=args.seed, resamples=args.resamples, overwrite=args.overwrite)
    print(reconstruction_markdown(report))
    print(f"-> {args.out} (report.json, summary.md)")
    return 0


def build_parser(mode: str) -> argparse.ArgumentParser:
    usage = None if mode != "geometry" else "defemb-analyze [{rouge,significance,rare-subset,reconstruction}] [options]"
    p = argparse.ArgumentParser(prog=f"defemb-analyze{'' if mode == 'geometry' else ' ' + mode}", description=DESCRIPTION,
                                usage=usage and usage + "\n       defemb-analyze --checkpoint CKPT --dict DICT --out DIR [...]",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    if mode == "geometry":
        p.add_argument("--checkpoint", required=True, help="fairseq checkpoint (model.pt) whose embeddings to analyze")
        p.add_argument("--compare", help="a second checkpoint (e.g. after fine-tuning): drift and joint projection")
        p.add_argument("--embeddings", nargs="*", metavar="NAME=PATH",
                       help="more matrices side by side: fairseq checkpoints, .npy, or .pt tensors")
        p.add_argument("--dict", required=True, help="the dict.txt of the checkpoints (<mask> is appended)")
        p.add_argument("--gpt2-encoder-json", help="decode GPT-2 BPE ids (bart.large/roberta.base dict.txt)")
        p.add_argument("--neighbours-of", nargs="*", metavar="TOKEN", help="tokens (symbol or surface) whose neighbours to list")
        p.add_argument("--k", type=int, default=8, help="neighbours per token (default 8)")
        p.add_argument("--metric", choices=("cosine", "euclidean"), default="cosine", help="neighbour metric (default cosine)")
        p.add_argument("--out", required=True, help="report directory (written atomically)")
        p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
    elif mode == "rouge":
        p.add_argument("--hyp", required=True, help="hypotheses, one per line")
        p.add_argument("--ref", required=True, help="references, one per line")
        p.add_argument("--stemming", action="store_true", help="Porter stemming (ROUGE -m); files2rouge does not stem")
        p.add_argument("--no-tokenize", action="store_true", help="input is already PTB-tokenized")
        add_rouge_root(p)
    elif mode == "significance":
        p.add_argument("--ref", required=True, help="references (ROUGE) or gold labels (accuracy), one per line")
        p.add_argument("--baseline", required=True, help="baseline outputs, comma-separated files (one per seed)")
        p.add_argument("--system", required=True, help="system outputs, comma-separated files (same seeds, same order)")
        p.add_argument("--metric", choices=("rouge", "accuracy"), default="rouge",
                       help="per-summary ROUGE F1 or 0/1 correctness (default rouge)")
        p.add_argument("--scorer", choices=BACKENDS, default="auto",
                       help="per-summary ROUGE from ROUGE-1.5.5 via sacrerouge or from rouge-score; auto (default): "
                            "sacrerouge, rouge-score only where ROUGE-1.5.5 cannot run (logged; the signature says which)")
        p.add_argument("--stemming", action="store_true", help="Porter stemming (ROUGE -m); files2rouge does not stem")
        p.add_argument("--no-tokenize", action="store_true", help="ROUGE input is already PTB-tokenized")
        add_rouge_root(p)
        p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
        p.add_argument("--seed", type=int, default=12345, help="bootstrap seed")
    elif mode == "reconstruction":
        p.add_argument("--checkpoint", required=True, help="the pretrained checkpoint whose rows are the truth (model.pt)")
        p.add_argument("--corpus", required=True, help="a corpus written by defemb-corpus --holdout")
        p.add_argument("--predictions", nargs="+", required=True, metavar="NAME=PATH",
                       help="defemb-predict files of the held-out tokens (--splits heldout or heldout_defonly "
                            "--token-ids CORPUS/holdout_ids.txt)")
        p.add_argument("--baseline-predictions", nargs="*", metavar="NAME=PATH",
                       help="learned baselines (e.g. a fitted W) that compete with the initialisers for best baseline")
        p.add_argument("--system", help="the prediction the tables mark as the system (default: the first); every "
                       "prediction file is bootstrapped against the best baseline")
        p.add_argument("--wordpiece-vocab", help="vocab.txt of a WordPiece corpus (for the subword initialiser)")
        p.add_argument("--gpt2-encoder-json", help="encoder.json of a GPT-2 BPE corpus (subword initialiser)")
        p.add_argument("--gpt2-vocab-bpe", help="vocab.bpe of a GPT-2 BPE corpus (subword initialiser)")
        p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
        p.add_argument("--seed", type=int, default=1, help="seed of the random initialiser and the bootstrap")
        p.add_argument("--out", required=True, help="report directory (written atomically)")
        p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    else:
        p.add_argument("--data-bin", required=True, help="fairseq-binarized data directory")
        p.add_argument("--test-split", default="test.source-target.target", help="binarized test targets")
        p.add_argument("--train-splits", nargs="+", default=["train.source-target.source", "train.source-target.target"],
                       help="binarized splits whose tokens count as 'in the training set'")
        p.add_argument("--threshold", type=int, default=40000, help="rare = id above this (BART: 40,000)")
        p.add_argument("--min-fraction", type=float, default=0.05, help="share of rare target tokens (BART: 0.05)")
        p.add_argument("--output", help="write kept test indices here (default stdout)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    mode = argv.pop(0) if argv and argv[0] in MODES else "geometry"
    args = build_parser(mode).parse_args(argv)
    configure_cli_logging()
    run = {"geometry": geometry_main, "rouge": rouge_main, "significance": significance_main,
           "rare-subset": rare_subset_main, "reconstruction": reconstruction_main}[mode]
    try:
        return run(args)
    except (OSError, ValueError, KeyError, RuntimeError) as err:  # OSError: missing input, existing output, disk full
        print(f"defemb-analyze: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

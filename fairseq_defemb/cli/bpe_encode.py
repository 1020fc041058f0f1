"""``defemb-bpe-encode``: fairseq's ``multiprocessing_bpe_encoder`` for a model with added tokens.

Same options; each added word (``OUT/added_tokens.json`` of ``defemb-add-tokens``, found beside
--encoder-json) comes out as its own BPE id, everything else as stock GPT-2 BPE. ``--decode``
turns BPE-id lines back into text (fairseq-generate does the same with --bpe gpt2
--gpt2-encoder-json OUT/encoder.json).

    defemb-bpe-encode --encoder-json new/encoder.json --vocab-bpe new/vocab.bpe \\
        --inputs train.src --outputs train.bpe --workers 4 --keep-empty
"""
import argparse
import contextlib
import logging
import sys
from pathlib import Path
from typing import BinaryIO, Iterator

from preprocess.gpt2_text import ADDED_TOKENS_FILE, AddedTokenEncoder, read_added_tokens
from fairseq_defemb.atomic_io import atomic_output_file, naming_failed_writes
from fairseq_defemb.cli.logging_setup import configure_cli_logging
from fairseq_defemb.parallel import WorkerDied, chunks, ordered_map

DESCRIPTION = __doc__.split("\n", 1)[1]
_encoder: AddedTokenEncoder | None = None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="defemb-bpe-encode", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoder-json", required=True, help="encoder.json written by defemb-add-tokens")
    p.add_argument("--vocab-bpe", required=True, help="vocab.bpe (the model's, copied into its directory)")
    p.add_argument("--added-tokens", help=f"{ADDED_TOKENS_FILE} (default: beside --encoder-json)")
    p.add_argument("--inputs", nargs="+", default=["-"], help="input files ('-': stdin)")
    p.add_argument("--outputs", nargs="+", default=["-"], help="output files, one per input ('-': stdout)")
    p.add_argument("--keep-empty", action="store_true", help="keep empty lines")
    p.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    p.add_argument("--decode", action="store_true", help="BPE-id lines -> text")
    return p


def _init(encoder_json: str, vocab_bpe: str, added: dict[str, int]) -> None:
    global _encoder
    _encoder = AddedTokenEncoder(encoder_json, vocab_bpe, added)


def _encode_lines(lines: tuple[str, ...], keep_empty: bool, decode: bool, where: tuple[str, ...]) -> list[str] | None:
    """One output line per input line, or None if a line is empty and not kept (the whole group
    is then dropped, as fairseq's encoder drops a group with an empty line). ``where``: each
    line's FILE:LINE, for the error a line that cannot be decoded gets."""
    out = []
    for line, place in zip(lines, where):
        line = line.strip()
        if not line and not keep_empty:
            return None
        if not decode:
            out.append(" ".join(map(str, _encoder.encode(line))))
            continue
        try:
            out.append(_encoder.decode([int(t) for t in line.split()]))
        except (ValueError, KeyError, TypeError) as err:  # a word that is no number, an id encoder.json lacks
            raise ValueError(f"{place}: --decode reads lines of BPE ids of --encoder-json; {line[:60]!r} is not one "
                             f"({type(err).__name__}: {err})") from None
    return out


def _work_chunk(jobs: list[tuple]) -> list[list[str] | None]:
    return [_encode_lines(*job) for job in jobs]


def _numbered(source: BinaryIO, name: str) -> Iterator[tuple[str, str]]:
    """(line, FILE:LINE) of an input read as bytes and decoded a line at a time, so that the error
    of a line that is not UTF-8 names that line (a text-mode file decodes blocks ahead of it)."""
    for lineno, raw in enumerate(source, 1):
        try:
            yield raw.decode("utf-8"), f"{name}:{lineno}"
        except UnicodeDecodeError as err:
            raise ValueError(f"{name}:{lineno}: not UTF-8 text ({err.reason}); convert it with iconv first") from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_cli_logging(logging.WARNING)  # before fairseq's GPT-2 encoder is imported: its import chatter
    if len(args.inputs) != len(args.outputs):
        print("defemb-bpe-encode: error: --inputs and --outputs need the same number of files", file=sys.stderr)
        return 2
    added_path = args.added_tokens or str(Path(args.encoder_json).parent / ADDED_TOKENS_FILE)
    try:
        added = read_added_tokens(added_path)
        _init(args.encoder_json, args.vocab_bpe, added)
    except (OSError, ValueError) as err:
        print(f"defemb-bpe-encode: error: {err}", file=sys.stderr)
        return 2
    try:
        dropped = _encode_files(args.inputs, args.outputs, keep_empty=args.keep_empty, decode=args.decode,
                                workers=args.workers, encoder=(args.encoder_json, args.vocab_bpe, added))
    # raised inside the outputs' context: atomic_output_file drops them whole. OSError: a missing input,
    # a failed write; ValueError: a line that is not UTF-8 or (--decode) no ids
    except (OSError, ValueError, WorkerDied) as err:
        print(f"defemb-bpe-encode: error: {err}", file=sys.stderr)
        return 2
    if dropped:
        print(f"defemb-bpe-encode: dropped {dropped} line group(s) with an empty line (--keep-empty keeps them)",
              file=sys.stderr)
    return 0


def _encode_files(inputs: list[str], outputs: list[str], *, keep_empty: bool, decode: bool, workers: int,
                  encoder: tuple[str, str, dict[str, int]]) -> int:
    """Encode (or decode) ``inputs`` into ``outputs`` ('-': stdin, stdout) with the encoder
    ``_init(*encoder)`` builds; returns the number of dropped line groups."""
    with naming_failed_writes(", ".join(o for o in outputs if o != "-") or "stdout"), contextlib.ExitStack() as stack:
        sources = [_numbered(stack.enter_context(open(f, "rb")), f) if f != "-" else _numbered(sys.stdin.buffer, "stdin")
                   for f in inputs]
        # each output appears whole, or not at all (the handle closes before the rename: LIFO)
        sinks = [stack.enter_context(open(stack.enter_context(atomic_output_file(f)), "w", encoding="utf-8"))
                 if f != "-" else sys.stdout for f in outputs]
        jobs = ((tuple(line for line, _ in group), keep_empty, decode, tuple(place for _, place in group))
                for group in zip(*sources))
        if workers > 1:
            # 100 line groups per task, as fairseq's encoder sends them
            results = (result for chunk in ordered_map(_work_chunk, chunks(jobs, 100), workers, initializer=_init,
                                                       initargs=encoder)
                       for result in chunk)
        else:
            results = (_encode_lines(*job) for job in jobs)
        dropped = 0
        for result in results:
            if result is None:
                dropped += 1
                continue
            for line, handle in zip(result, sinks):
                print(line, file=handle)
    return dropped


if __name__ == "__main__":
    sys.exit(main())

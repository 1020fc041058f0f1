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
import sys
from pathlib import Path

from preprocess.gpt2_text import ADDED_TOKENS_FILE, AddedTokenEncoder, read_added_tokens
from fairseq_defemb.atomic_io import atomic_output_file
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


def _encode_lines(lines: tuple[str, ...], keep_empty: bool, decode: bool) -> list[str] | None:
    """One output line per input line, or None if a line is empty and not kept (the whole group
    is then dropped, as fairseq's encoder drops a group with an empty line)."""
    out = []
    for line in lines:
        line = line.strip()
        if not line and not keep_empty:
            return None
        out.append(_encoder.decode([int(t) for t in line.split()]) if decode
                   else " ".join(map(str, _encoder.encode(line))))
    return out


def _work_chunk(jobs: list[tuple]) -> list[list[str] | None]:
    return [_encode_lines(*job) for job in jobs]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
    except WorkerDied as err:  # raised inside the outputs' context: atomic_output_file drops them whole
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
    with contextlib.ExitStack() as stack:
        sources = [stack.enter_context(open(f, encoding="utf-8")) if f != "-" else sys.stdin for f in inputs]
        # each output appears whole, or not at all (the handle closes before the rename: LIFO)
        sinks = [stack.enter_context(open(stack.enter_context(atomic_output_file(f)), "w", encoding="utf-8"))
                 if f != "-" else sys.stdout for f in outputs]
        jobs = ((group, keep_empty, decode) for group in zip(*sources))
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

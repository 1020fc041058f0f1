#!/usr/bin/env python
"""Summaries made the way the authors made the paper's: BART's hub interface, fp32, 32 documents a call.

The authors' commands/run_eval/eval_summarization_bart.sh runs their copy of fairseq's
examples/bart/summarize.py, which reads the raw documents and calls ``BARTModel.sample``. That path
differs from ``fairseq-generate`` on the binarized test set in what the model sees: the source is
``<s>`` + its first 1,022 BPE tokens + ``</s>`` (binarized: no ``<s>``, 1,023 tokens), and every summary
is forced to start with ``<s>`` (BART's hub sets it as the first generated token). The decoding
settings (beam, length penalty, lengths, n-gram blocking) come from the command line;
examples/paper/evaluate_summarization.sh passes the paper's for each data set.

Importing the plugin first makes ``--no-repeat-ngram-size`` ban repeats here too (fairseq 0.12 ignores
it without its CUDA extension; fairseq_defemb/ngram_blocking.py).
"""
import argparse
from pathlib import Path

import torch

import fairseq_defemb.tasks  # noqa: F401  (n-gram blocking that works; checkpoints load under torch >= 2.6)
from fairseq.models.bart import BARTModel
from fairseq_defemb.analysis.report import read_lines
from fairseq_defemb.atomic_io import atomic_output_file


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="the fine-tuned checkpoint (checkpoint_best.pt)")
    parser.add_argument("--data-bin", required=True,
                        help="the binarized data set it was fine-tuned on (for dict.source.txt and dict.target.txt)")
    parser.add_argument("--source", required=True, help="raw documents, one per line (e.g. test.source)")
    parser.add_argument("--out", required=True, help="summaries, one per line, in the documents' order")
    parser.add_argument("--gpt2-encoder-json", default="encoder.json")
    parser.add_argument("--gpt2-vocab-bpe", default="vocab.bpe")
    parser.add_argument("--beam", type=int, required=True)
    parser.add_argument("--lenpen", type=float, required=True)
    parser.add_argument("--min-len", type=int, required=True)
    parser.add_argument("--max-len-b", type=int, required=True, help="the longest summary (tokens)")
    parser.add_argument("--no-repeat-ngram-size", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=32, help="documents per call (the authors': 32)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    checkpoint = Path(args.checkpoint)
    bart = BARTModel.from_pretrained(str(checkpoint.parent), checkpoint_file=checkpoint.name,
                                     data_name_or_path=str(Path(args.data_bin).resolve()),
                                     gpt2_encoder_json=args.gpt2_encoder_json, gpt2_vocab_bpe=args.gpt2_vocab_bpe)
    bart.eval()
    if torch.cuda.is_available():
        bart.cuda()
    documents = [line.strip() for line in read_lines(args.source)]
    settings = dict(beam=args.beam, lenpen=args.lenpen, min_len=args.min_len, max_len_b=args.max_len_b,
                    no_repeat_ngram_size=args.no_repeat_ngram_size)
    with atomic_output_file(args.out) as tmp, open(tmp, "w", encoding="utf-8") as out, torch.no_grad():
        for start in range(0, len(documents), args.batch_size):
            for summary in bart.sample(documents[start:start + args.batch_size], **settings):
                # one summary per line, as ROUGE pairs them with the references
                out.write(summary.replace("\n", " ") + "\n")
    print(f"{len(documents)} summaries -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

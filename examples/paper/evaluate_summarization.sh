#!/usr/bin/env bash
# Summaries and ROUGE as the authors computed the paper's (commands/run_eval/eval_summarization_bart.sh):
# their summarize.py's decoding settings for the data set, then files2rouge's ROUGE on the raw files
# (ROUGE-1.5.5 -c 95 -r 1000 -n 2 -a, no stemming, no tokenizer before it, sentences split at " . ").
#   usage: examples/paper/evaluate_summarization.sh DATASET CHECKPOINT DATA_BIN TEST_SOURCE TEST_TARGET OUT [summarize.py options...]
# DATASET: cnndm, xsum, billsum or bigpatent. OUT receives one summary per line; options after it are
# appended to summarize.py's (e.g. --batch-size). ENCODER_JSON and VOCAB_BPE name GPT-2's BPE files
# (default: encoder.json and vocab.bpe here).
set -euo pipefail
HERE=$(dirname "$0")
source "$HERE/settings.sh"
DATASET=${1:?cnndm, xsum, billsum or bigpatent}; CHECKPOINT=${2:?fine-tuned checkpoint}
DATA=${3:?binarized data set}; SOURCE=${4:?raw test documents}; TARGET=${5:?raw test summaries}
OUT=${6:?where the summaries go}; shift 6
summarization_settings "$DATASET"
python "$HERE/summarize.py" --checkpoint "$CHECKPOINT" --data-bin "$DATA" --source "$SOURCE" --out "$OUT" \
    --gpt2-encoder-json "${ENCODER_JSON:-encoder.json}" --gpt2-vocab-bpe "${VOCAB_BPE:-vocab.bpe}" \
    --beam "$BEAM" --lenpen "$LENPEN" --min-len "$MIN_LEN" --max-len-b "$MAX_LEN_B" \
    --no-repeat-ngram-size "$NO_REPEAT_NGRAM" --batch-size 32 "$@"
defemb-analyze rouge --hyp "$OUT" --ref "$TARGET" --no-tokenize

#!/usr/bin/env bash
# Fine-tune BART (after surgery, or the original) on a summarization data set as the paper did: Table 15
# for updates, warm-up, tokens per update, lr, Adam betas, weight decay and dropout; the authors' published
# command (commands/run_train_summarization/train_BART_cnndm.sh) for the rest: plain cross entropy,
# 8,192 tokens a step accumulated to the update's tokens, clipping 0.1, fp32 on one GPU.
# docs/reproducing-the-paper.md gives every option beside theirs.
#   usage: [GPUS=N] examples/paper/finetune_summarization.sh DATASET DATA_BIN MODEL_PT SAVE_DIR [SEED [fairseq-train options...]]
# DATASET: cnndm, xsum, billsum or bigpatent; DATA_BIN: fairseq-preprocess output (source/target);
# MODEL_PT: the checkpoint to start from (defemb-surgery's OUT/model.pt). Options after SEED are appended
# and override these, e.g. --fp16 for speed. GPUS=N keeps the tokens per update on N GPUs.
set -euo pipefail
source "$(dirname "$0")/settings.sh"
DATASET=${1:?cnndm, xsum, billsum or bigpatent}; DATA=${2:?binarized data set}
MODEL=${3:?checkpoint to fine-tune (model.pt)}; SAVE=${4:?checkpoint directory}; SEED=${5:-1}
shift $(( $# < 5 ? $# : 5 ))
GPUS=${GPUS:-1}
summarization_settings "$DATASET"
split_batch "$TOKENS" 8192 "$GPUS"
fairseq-train "$DATA" --user-dir "$(plugin_dir)" --restore-file "$MODEL" \
    --reset-optimizer --reset-dataloader --reset-meters --no-epoch-checkpoints --required-batch-size-multiple 1 \
    --task translation --source-lang source --target-lang target --truncate-source \
    --max-source-positions 1024 --max-target-positions 1024 \
    --arch bart_large --share-all-embeddings --criterion cross_entropy --dropout 0.1 --attention-dropout 0.1 \
    --optimizer adam --adam-betas '(0.9, 0.999)' --adam-eps 1e-08 --weight-decay 0.01 --clip-norm 0.1 \
    --lr 3e-05 --lr-scheduler polynomial_decay --warmup-updates "$WARMUP" --total-num-update "$UPDATES" \
    --max-update "$UPDATES" --max-tokens "$MAX_TOKENS" --update-freq "$UPDATE_FREQ" --distributed-world-size "$GPUS" \
    --skip-invalid-size-inputs-valid-test --seed "$SEED" --save-dir "$SAVE" \
    --log-format simple --log-interval 400 "$@"

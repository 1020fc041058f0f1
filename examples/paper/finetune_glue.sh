#!/usr/bin/env bash
# Fine-tune RoBERTa or BART (after surgery, or the original) on RTE or MRPC as the paper did: Table 13
# (RoBERTa) or Table 15 (BART) for lr, sentences per batch, updates, warm-up, Adam betas, weight decay and
# dropout; the authors' published commands (commands/run_train_glue/train_{RoBERTa,Bart}_glue.sh) for
# the rest: 10 epochs at most, fp16 on one GPU, the best checkpoint by validation accuracy.
# docs/reproducing-the-paper.md gives every option beside theirs.
#   usage: examples/paper/finetune_glue.sh MODEL TASK DATA_BIN MODEL_PT SAVE_DIR [SEED [fairseq-train options...]]
# MODEL: roberta or bart; TASK: RTE or MRPC; DATA_BIN: fairseq's GLUE preprocessing (input0 input1 label);
# MODEL_PT: the checkpoint to start from (defemb-surgery's OUT/model.pt). Options after SEED are appended
# and override these. fp16 needs CUDA: without it the run is fp32 on the CPU.
set -euo pipefail
source "$(dirname "$0")/settings.sh"
FAMILY=${1:?roberta or bart}; TASK=${2:?RTE or MRPC}; DATA=${3:?binarized GLUE task}
MODEL=${4:?checkpoint to fine-tune (model.pt)}; SAVE=${5:?checkpoint directory}; SEED=${6:-1}
shift $(( $# < 6 ? $# : 6 ))
glue_settings "$FAMILY" "$TASK"
if [ "$FAMILY" = roberta ]; then
    MODEL_OPTIONS=(--arch roberta --weight-decay 0.1 --adam-eps 1e-06)
else
    MODEL_OPTIONS=(--arch bart_large --add-prev-output-tokens --layernorm-embedding --share-all-embeddings
                   --weight-decay 0.01 --adam-eps 1e-08)
fi
FP16=()
if python -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then FP16=(--fp16); fi
fairseq-train "$DATA" --user-dir "$(plugin_dir)" --restore-file "$MODEL" \
    --reset-optimizer --reset-dataloader --reset-meters \
    --no-epoch-checkpoints --no-last-checkpoints --no-save-optimizer-state \
    --task sentence_prediction --init-token 0 --num-classes 2 --criterion sentence_prediction \
    "${MODEL_OPTIONS[@]}" --dropout 0.1 --attention-dropout 0.1 \
    --optimizer adam --adam-betas '(0.9, 0.98)' --clip-norm 0.0 \
    --lr "$LR" --lr-scheduler polynomial_decay --warmup-updates "$WARMUP" --total-num-update "$UPDATES" --max-epoch 10 \
    --batch-size "$BATCH" --max-tokens 4400 --update-freq 1 --required-batch-size-multiple 1 \
    --distributed-world-size 1 --find-unused-parameters \
    "${FP16[@]}" --fp16-init-scale 4 --threshold-loss-scale 1 --fp16-scale-window 128 \
    --best-checkpoint-metric accuracy --maximize-best-checkpoint-metric \
    --seed "$SEED" --save-dir "$SAVE" --log-format simple --log-interval "$LOG_INTERVAL" "$@"

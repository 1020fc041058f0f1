#!/usr/bin/env bash
# DefinitionEMB from roberta.base as the paper trained it: Table 12 where the paper speaks (400k updates,
# 24k warm-up from lr 1e-7, 4,096 tokens per update, lr 1e-4 inverse sqrt, Adam (0.9, 0.98), weight
# decay 0.01, dropout 0.1, embeddings trained), the authors' published command
# (commands/run_train_dictemb/train_dictemb_roberta.sh) where it is silent: fp32 on one GPU, their
# clipping, Adam epsilon, W initialisation and their --mask-context corruption.
# docs/reproducing-the-paper.md gives every option beside theirs, and why where it differs.
#   usage: [GPUS=N] examples/train_definitionemb_roberta_base.sh ROBERTA_DIR DEFS_BIN SAVE_DIR [SEED [fairseq-train options...]]
# Options after SEED are appended, so they override these (argparse keeps the last value), e.g.
# --arch defemb_roberta for another size, --max-update 100 for a smoke test, --fp16 for speed.
# GPUS=N shares the 4,096 tokens of an update among N GPUs. Without CUDA fairseq runs it on the CPU.
set -euo pipefail
source "$(dirname "$0")/paper/settings.sh"
ROBERTA=${1:?roberta.base directory (model.pt + dict.txt)}; DATA=${2:?definition corpus (defemb-corpus --out)}
SAVE=${3:?checkpoint directory}; SEED=${4:-1}; shift $(( $# < 4 ? $# : 4 ))
GPUS=${GPUS:-1}
split_batch 4096 4096 "$GPUS"
fairseq-train "$DATA" --user-dir "$(plugin_dir)" \
    --task definition_cloze --max-positions 512 --corruption bert --mask-prob 0.5 --random-token-prob 0.25 \
    --criterion mimic_mse \
    --arch defemb_roberta_base --pretrained-checkpoint "$ROBERTA/model.pt" --update-embeddings --projection-init normal \
    --optimizer adam --adam-betas '(0.9, 0.98)' --adam-eps 1e-08 --weight-decay 0.01 --clip-norm 0.768 \
    --lr 1e-4 --lr-scheduler inverse_sqrt --warmup-updates 24000 --warmup-init-lr 1e-07 \
    --max-update 400000 --max-tokens "$MAX_TOKENS" --update-freq "$UPDATE_FREQ" --distributed-world-size "$GPUS" \
    --dropout 0.1 --attention-dropout 0.1 --required-batch-size-multiple 1 --seed "$SEED" \
    --save-dir "$SAVE" --no-epoch-checkpoints --log-format simple --log-interval 4000 "$@"

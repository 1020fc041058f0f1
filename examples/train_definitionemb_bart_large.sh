#!/usr/bin/env bash
# DefinitionEMB from bart.large as the paper trained it: Table 12 where the paper speaks (250k updates,
# 20k warm-up from lr 1e-7, 4,096 tokens per update, lr 1e-4 inverse sqrt, Adam (0.9, 0.98), weight
# decay 0.01, dropout 0.1, embeddings frozen), the authors' published command
# (commands/run_train_dictemb/train_dictemb_bart.sh) where it is silent: fp32 on one GPU, their
# clipping, Adam epsilon, attention dropout, W initialisation and validation every 5,000 updates.
# docs/reproducing-the-paper.md gives every option beside theirs, and why where it differs.
#   usage: [GPUS=N] examples/train_definitionemb_bart_large.sh BART_DIR DEFS_BIN SAVE_DIR [SEED [fairseq-train options...]]
# Options after SEED are appended, so they override these (argparse keeps the last value), e.g.
# --arch defemb_bart for another size, --max-update 100 for a smoke test, --fp16 for speed.
# GPUS=N shares the 4,096 tokens of an update among N GPUs. Without CUDA fairseq runs it on the CPU.
set -euo pipefail
source "$(dirname "$0")/paper/settings.sh"
BART=${1:?bart.large directory (model.pt + dict.txt)}; DATA=${2:?definition corpus (defemb-corpus --out)}
SAVE=${3:?checkpoint directory}; SEED=${4:-1}; shift $(( $# < 4 ? $# : 4 ))
GPUS=${GPUS:-1}
split_batch 4096 4096 "$GPUS"
fairseq-train "$DATA" --user-dir "$(plugin_dir)" \
    --task definition_cloze --max-positions 1024 --criterion mimic_mse \
    --arch defemb_bart_large --pretrained-checkpoint "$BART/model.pt" --projection-init normal \
    --optimizer adam --adam-betas '(0.9, 0.98)' --adam-eps 1e-08 --weight-decay 0.01 --clip-norm 1.024 \
    --lr 1e-4 --lr-scheduler inverse_sqrt --warmup-updates 20000 --warmup-init-lr 1e-07 \
    --max-update 250000 --max-tokens "$MAX_TOKENS" --update-freq "$UPDATE_FREQ" --distributed-world-size "$GPUS" \
    --dropout 0.1 --attention-dropout 0.0 --required-batch-size-multiple 1 --seed "$SEED" \
    --save-dir "$SAVE" --no-epoch-checkpoints --save-interval 1000000 --validate-interval 1000000 \
    --save-interval-updates 5000 --validate-interval-updates 5000 --keep-interval-updates 1 \
    --log-format simple --log-interval 4000 "$@"

#!/usr/bin/env bash
# DefinitionEMB from roberta.base with the paper's hyperparameters (Table 12):
# 400k updates, 24k warm-up from 1e-7, 4,096 tokens per batch, lr 1e-4, Adam (0.9, 0.98),
# weight decay 0.01, dropout 0.1; the paper trains RoBERTa's embeddings too.
#   usage: examples/train_definitionemb_roberta_base.sh ROBERTA_DIR DEFS_BIN SAVE_DIR [SEED [fairseq-train options...]]
# Options after SEED are appended, so they override the paper's (argparse keeps the last value),
# e.g. --arch defemb_roberta for another size, or --max-update 100 for a smoke test.
# fp16 on a GPU; on a machine without CUDA the same run goes to the CPU in fp32.
set -euo pipefail
ROBERTA=${1:?roberta.base directory (model.pt + dict.txt)}; DATA=${2:?definition corpus}
SAVE=${3:?checkpoint directory}; SEED=${4:-1}; shift $(( $# < 4 ? $# : 4 ))
PLUGIN=$(python -c "import importlib.util as u; print(u.find_spec('fairseq_defemb').submodule_search_locations[0])")
DEVICE=$(python -c 'import torch; print("--fp16" if torch.cuda.is_available() else "--cpu")')
fairseq-train "$DATA" --user-dir "$PLUGIN" \
    --task definition_cloze --criterion mimic_mse \
    --arch defemb_roberta_base --pretrained-checkpoint "$ROBERTA/model.pt" --update-embeddings \
    --optimizer adam --adam-betas '(0.9, 0.98)' --adam-eps 1e-6 --weight-decay 0.01 --clip-norm 0.0 \
    --lr 1e-4 --lr-scheduler inverse_sqrt --warmup-updates 24000 --warmup-init-lr 1e-7 \
    --max-update 400000 --max-tokens 4096 --dropout 0.1 --attention-dropout 0.1 \
    --required-batch-size-multiple 1 --seed "$SEED" --save-dir "$SAVE" \
    "$DEVICE" --log-format simple --log-interval 100 "$@"

#!/usr/bin/env bash
# RoBERTa or BART + DefinitionEMB on RTE or MRPC as the paper ran it: surgery with the task's alpha, then
# fine-tuning (examples/paper/finetune_glue.sh).
#   usage: [SETTING=value ...] examples/paper/glue.sh MODEL TASK
# MODEL: roberta or bart; TASK: RTE or MRPC. The settings are environment variables (defaults in brackets):
#   PLM [roberta.base or bart.large]   the pretrained fairseq checkpoint directory: model.pt and dict.txt
#   DATA [TASK-bin]           fairseq's GLUE preprocessing (preprocess_GLUE_tasks.sh): input0 input1 label
#   DEFEMB [defemb-sSEED.pt]  DefinitionEMB's predictions for PLM (defemb-predict after
#                             examples/train_definitionemb_roberta_base.sh or _bart_large.sh)
#   SEED [1]                  the paper averages seeds 1, 2 and 3
#   FINETUNE, SURGERY [empty] options appended to finetune_glue.sh and defemb-surgery
# Outputs: PLM.defemb-TASK-sS/ (the surgered checkpoint) and checkpoints-MODEL-TASK-sS/.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/settings.sh"
FAMILY=${1:?roberta or bart}; TASK=${2:?RTE or MRPC}
glue_settings "$FAMILY" "$TASK"
case "$FAMILY" in roberta) DEFAULT_PLM=roberta.base ;; bart) DEFAULT_PLM=bart.large ;; esac
PLM=${PLM:-$DEFAULT_PLM}; DATA=${DATA:-$TASK-bin}; SEED=${SEED:-1}; DEFEMB=${DEFEMB:-defemb-s$SEED.pt}
read -ra FINETUNE <<< "${FINETUNE:-}"; read -ra SURGERY <<< "${SURGERY:-}"
SURGERED=${PLM%/}.defemb-$TASK-s$SEED
# both sentences' directories: a token only the second sentences use is still a task token
defemb-surgery --checkpoint "$PLM/model.pt" --embeddings "$DEFEMB" --task-data "$DATA/input0" "$DATA/input1" \
    --alpha "$ALPHA" --out "$SURGERED/" --overwrite "${SURGERY[@]}"
"$HERE/finetune_glue.sh" "$FAMILY" "$TASK" "$DATA" "$SURGERED/model.pt" checkpoints-$FAMILY-$TASK-s$SEED \
    "$SEED" "${FINETUNE[@]}"

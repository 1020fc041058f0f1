#!/usr/bin/env bash
# BART + DefinitionEMB on one summarization data set, end to end, as the paper ran it: BPE and binarize
# as fairseq's BART example, the definition corpus, DefinitionEMB training (once per seed) and
# prediction, surgery with the data set's alpha, fine-tuning, generation and ROUGE.
#   usage: [SETTING=value ...] examples/paper/bart_summarization.sh DATASET
# DATASET: cnndm, xsum, billsum or bigpatent. Run it from the directory holding the files the settings
# name; the settings are environment variables (defaults in brackets):
#   PLM [bart.large]          fairseq's bart.large: model.pt and dict.txt
#   RAW [DATASET]             {train,val,test}.{source,target}: one document / summary per line
#   ENCODER_JSON, VOCAB_BPE   GPT-2's BPE files [encoder.json, vocab.bpe]
#   WIKTIONARY [kaikki.org-dictionary-English.jsonl]   the paper's definitions (kaikki.org JSONL)
#   MANUAL [named_entities.tsv]   token<TAB>pos<TAB>definition, e.g. the paper's named entities
#   SEED [1]                  the paper averages seeds 1, 2 and 3 (DefinitionEMB and fine-tuning)
#   GPUS [1]                  GPUs per training run; the tokens per update stay the paper's
#   WORKERS [60]              processes for BPE, binarization and the corpus
#   DEFEMB_TRAIN, FINETUNE, GENERATE, SURGERY [empty]   options appended to
#                             train_definitionemb_bart_large.sh, finetune_summarization.sh,
#                             summarize.py and defemb-surgery (e.g. --force past its sanity guard)
# Outputs, by data set and seed: DATASET-bin/, defemb-sS.pt, PLM.defemb-DATASET-sS/,
# checkpoints-DATASET-sS/, DATASET-sS.hypo and the ROUGE figures on stdout.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/settings.sh"
DATASET=${1:?cnndm, xsum, billsum or bigpatent}
summarization_settings "$DATASET"
PLM=${PLM:-bart.large}; RAW=${RAW:-$DATASET}; SEED=${SEED:-1}; WORKERS=${WORKERS:-60}
export ENCODER_JSON=${ENCODER_JSON:-encoder.json} VOCAB_BPE=${VOCAB_BPE:-vocab.bpe} GPUS=${GPUS:-1}
WIKTIONARY=${WIKTIONARY:-kaikki.org-dictionary-English.jsonl}; MANUAL=${MANUAL:-named_entities.tsv}
read -ra DEFEMB_TRAIN <<< "${DEFEMB_TRAIN:-}"; read -ra FINETUNE <<< "${FINETUNE:-}"
read -ra GENERATE <<< "${GENERATE:-}"; read -ra SURGERY <<< "${SURGERY:-}"

# 1. BPE-encode and binarize the data set as fairseq's BART example does (once per data set)
if [ ! -f "$DATASET-bin/dict.source.txt" ]; then
    mkdir -p "$DATASET.bpe"
    # both sides of a split in one call (the encoder zips its inputs line by line): fairseq's example
    # runs one call per side, with the same output, and each call pays fairseq's start-up again
    for SPLIT in train val test; do
        python -m fairseq.examples.roberta.multiprocessing_bpe_encoder --encoder-json "$ENCODER_JSON" \
            --vocab-bpe "$VOCAB_BPE" --inputs "$RAW/$SPLIT.source" "$RAW/$SPLIT.target" \
            --outputs "$DATASET.bpe/$SPLIT.source" "$DATASET.bpe/$SPLIT.target" --workers "$WORKERS" --keep-empty
    done
    fairseq-preprocess --source-lang source --target-lang target --trainpref "$DATASET.bpe/train" \
        --validpref "$DATASET.bpe/val" --testpref "$DATASET.bpe/test" --destdir "$DATASET-bin/" \
        --workers "$WORKERS" --srcdict "$PLM/dict.txt" --tgtdict "$PLM/dict.txt"
fi
# 2. DefinitionEMB: the corpus (once), training and prediction (once per seed, shared by the data sets)
if [ ! -f defemb-s$SEED.pt ]; then
    if [ ! -f defs-bin/corpus.json ]; then
        defemb-corpus --source wiktionary,numbers,manual --wiktionary-jsonl "$WIKTIONARY" --manual-tsv "$MANUAL" \
            --vocab "$PLM/dict.txt" --bpe gpt2 --gpt2-encoder-json "$ENCODER_JSON" --gpt2-vocab-bpe "$VOCAB_BPE" \
            --out defs-bin --workers "$WORKERS"
    fi
    "$HERE/../train_definitionemb_bart_large.sh" "$PLM" defs-bin defemb-ckpt-s$SEED "$SEED" "${DEFEMB_TRAIN[@]}"
    defemb-predict --checkpoint defemb-ckpt-s$SEED/checkpoint_best.pt --corpus defs-bin --out defemb-s$SEED.pt
fi
# 3. surgery: the data set's alpha, V_task from its training split
SURGERED=${PLM%/}.defemb-$DATASET-s$SEED
defemb-surgery --checkpoint "$PLM/model.pt" --embeddings defemb-s$SEED.pt --task-data "$DATASET-bin" \
    --alpha "$ALPHA" --out "$SURGERED/" --overwrite "${SURGERY[@]}"
defemb-surgery --verify "$SURGERED" --against "$PLM"
# 4. fine-tune, 5. generate and score
"$HERE/finetune_summarization.sh" "$DATASET" "$DATASET-bin" "$SURGERED/model.pt" checkpoints-$DATASET-s$SEED \
    "$SEED" "${FINETUNE[@]}"
"$HERE/evaluate_summarization.sh" "$DATASET" checkpoints-$DATASET-s$SEED/checkpoint_best.pt "$DATASET-bin" \
    "$RAW/test.source" "$RAW/test.target" "$DATASET-s$SEED.hypo" "${GENERATE[@]}"

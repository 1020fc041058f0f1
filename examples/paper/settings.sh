# The paper's values per data set and per GLUE task, and the batch arithmetic, for the recipes in
# examples/ that source this file. docs/reproducing-the-paper.md lists each value beside the paper's
# tables and the authors' scripts; tests/test_paper_recipes.py keeps the three equal.

# summarization_settings DATASET: fine-tuning as Table 15 (updates, warm-up, tokens per update),
# alpha as Table 2, generation as the authors' examples/bart/summarize.py (it has no Y-BIGPATENT
# entry, so Y-BIGPATENT gets its CNN/DM default, which is also Table 15's beam 4 and length penalty 2.0).
summarization_settings() {
    case "$1" in
        cnndm)     UPDATES=20000 WARMUP=500  TOKENS=65536 ALPHA=100 BEAM=4 LENPEN=2.0 MIN_LEN=55 MAX_LEN_B=140 ;;
        xsum)      UPDATES=15000 WARMUP=500  TOKENS=32768 ALPHA=10  BEAM=6 LENPEN=1.0 MIN_LEN=10 MAX_LEN_B=60 ;;
        billsum)   UPDATES=21320 WARMUP=1705 TOKENS=8192  ALPHA=7   BEAM=4 LENPEN=0.6 MIN_LEN=10 MAX_LEN_B=200 ;;
        bigpatent) UPDATES=92880 WARMUP=7430 TOKENS=8192  ALPHA=30  BEAM=4 LENPEN=2.0 MIN_LEN=55 MAX_LEN_B=140 ;;
        *) echo "unknown summarization data set '$1': cnndm, xsum, billsum or bigpatent" >&2; return 1 ;;
    esac
    NO_REPEAT_NGRAM=3
}

# glue_settings MODEL TASK: RoBERTa as Table 13, BART as Table 15; alpha as Table 2 for BART and, for
# RoBERTa, the best of Tables 16-17 (the paper picks alpha on validation; Table 2 lists BART only);
# the authors' log intervals (RoBERTa 50 updates, BART a fiftieth of the run).
glue_settings() {
    case "$1/$2" in
        roberta/RTE)  LR=2e-5 BATCH=16 UPDATES=2036 WARMUP=122 ALPHA=5 LOG_INTERVAL=50 ;;
        roberta/MRPC) LR=1e-5 BATCH=16 UPDATES=2296 WARMUP=137 ALPHA=5 LOG_INTERVAL=50 ;;
        bart/RTE)     LR=1e-5 BATCH=32 UPDATES=1020 WARMUP=61  ALPHA=3 LOG_INTERVAL=20 ;;
        bart/MRPC)    LR=2e-5 BATCH=64 UPDATES=700  WARMUP=42  ALPHA=5 LOG_INTERVAL=14 ;;
        *) echo "unknown GLUE run '$1 $2': roberta or bart, then RTE or MRPC" >&2; return 1 ;;
    esac
}

# split_batch TOKENS PER_GPU GPUS: MAX_TOKENS (per GPU and step) and UPDATE_FREQ so that one update
# sees TOKENS tokens on GPUS GPUs, as fairseq counts them (max tokens x update freq x GPUs): the
# authors' runs had one GPU, PER_GPU tokens a step, and accumulated steps up to TOKENS.
split_batch() {
    local tokens=$1 per_gpu=$2 gpus=$3
    MAX_TOKENS=$(( tokens / gpus < per_gpu ? tokens / gpus : per_gpu ))
    UPDATE_FREQ=$(( tokens / (MAX_TOKENS * gpus) ))
    if (( MAX_TOKENS * UPDATE_FREQ * gpus != tokens )); then
        echo "$tokens tokens per update do not split evenly over $gpus GPUs" >&2
        return 1
    fi
}

# The installed plugin's directory, for fairseq's --user-dir.
plugin_dir() {
    python -c "import importlib.util as u; print(u.find_spec('fairseq_defemb').submodule_search_locations[0])"
}

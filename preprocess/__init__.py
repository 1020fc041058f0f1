"""The preprocessing stage: the definition corpus (``preprocess.corpus``: dictionary readers,
prompts, subword tokenizers, the corpus builder behind ``defemb-corpus``) and the task-data
helpers (``preprocess.gpt2_text``: GPT-2 BPE that emits added tokens, behind
``defemb-bpe-encode``). Nothing here imports fairseq or torch at import time."""

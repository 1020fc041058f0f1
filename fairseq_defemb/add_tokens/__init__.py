"""``defemb-add-tokens``: new tokens for a fairseq or transformers model, their rows initialised
from their dictionary definitions (DefinitionEMB) or a baseline.

``add_tokens_fairseq`` (``fairseq_model``) and ``add_tokens_hf`` (``hf_model``) return the report;
``gpt2_text`` is the GPT-2 BPE text side (``defemb-bpe-encode``); ``initialise`` the initialisers;
``words`` the TSV reader.
"""

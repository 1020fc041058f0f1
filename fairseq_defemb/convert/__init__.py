"""Converters between Hugging Face transformers directories and stock fairseq checkpoints."""

"""Registered on import of fairseq_defemb."""

"""Registered on import of fairseq_defemb."""
from fairseq_defemb.criterions import mimic_mse  # noqa: F401

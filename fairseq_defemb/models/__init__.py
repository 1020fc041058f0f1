"""Registered on import of fairseq_defemb."""
from fairseq_defemb.models import defemb  # noqa: F401

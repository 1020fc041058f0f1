"""Registered on import of fairseq_defemb."""
from fairseq_defemb.tasks import definition_cloze  # noqa: F401

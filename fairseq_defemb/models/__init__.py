"""The ``defemb_roberta*`` / ``defemb_bart*`` models, registered on import (fairseq imports this
subpackage of ``--user-dir fairseq_defemb``; :func:`fairseq_defemb.register` does otherwise)."""
from fairseq_defemb import allow_fairseq_checkpoints
from fairseq_defemb.models import defemb  # noqa: F401

allow_fairseq_checkpoints()

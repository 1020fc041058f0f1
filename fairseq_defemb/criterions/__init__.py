"""``--criterion mimic_mse`` (Eq. 5), registered on import; ``fairseq_defemb.tasks`` imports it."""
from fairseq_defemb.criterions import mimic_mse  # noqa: F401

"""``--task definition_cloze``, registered on import.

fairseq imports this subpackage of ``--user-dir fairseq_defemb`` (:func:`fairseq_defemb.register`
does otherwise). fairseq imports no ``criterions/`` of a user dir, so the task's criterion,
``mimic_mse``, is registered here too. Loading the plugin also lets torch read fairseq's
checkpoints and makes ``--no-repeat-ngram-size`` work on fairseq 0.12 (``ngram_blocking``).
"""
from fairseq_defemb import allow_fairseq_checkpoints, ngram_blocking
from fairseq_defemb.criterions import mimic_mse  # noqa: F401
from fairseq_defemb.tasks import definition_cloze  # noqa: F401

allow_fairseq_checkpoints()
ngram_blocking.apply()

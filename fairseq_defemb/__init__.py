"""DefinitionEMB as a fairseq plugin: ``--user-dir fairseq_defemb``.

Importing the package registers the ``definition_cloze`` task, the ``mimic_mse``
criterion and the ``defemb_*`` models, and lets torch >= 2.6 load fairseq
checkpoints: they pickle ``argparse.Namespace`` and torch now refuses unknown
globals under ``weights_only=True``.
"""
import argparse

import torch

torch.serialization.add_safe_globals([argparse.Namespace])

from fairseq_defemb import criterions, models, tasks  # noqa: E402,F401  (registration)

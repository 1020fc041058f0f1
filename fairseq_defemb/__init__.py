"""DefinitionEMB as a fairseq plugin: ``--user-dir fairseq_defemb``.

Importing the package registers the ``definition_cloze`` task, the ``mimic_mse``
criterion and the ``defemb_*`` models, lets torch >= 2.6 load fairseq checkpoints
(they pickle ``argparse.Namespace`` and torch now refuses unknown globals under
``weights_only=True``), and makes ``fairseq-generate --no-repeat-ngram-size`` work on
the fairseq 0.12 this project pins, whose fallback bans nothing (see ``ngram_blocking``).
"""
import argparse

import torch

torch.serialization.add_safe_globals([argparse.Namespace])

from fairseq_defemb import criterions, models, ngram_blocking, tasks  # noqa: E402,F401  (registration)

ngram_blocking.apply()

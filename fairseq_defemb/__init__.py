"""fairseq-defemb: DefinitionEMB for fairseq models, as a plugin and a library.

As a plugin (``fairseq-train --user-dir fairseq_defemb``), fairseq imports this package and then
its ``tasks/`` and ``models/`` subpackages, which register the ``definition_cloze`` task (with the
``mimic_mse`` criterion it trains with) and the ``defemb_*`` models. Importing the package alone
imports neither torch nor fairseq, so the command-line tools it also holds start at once.

When the package was imported before fairseq loads the user dir (a script that imports the
library first), fairseq skips ``tasks/`` and ``models/``: it only asks whether the user dir is in
the package's ``__path__``. That question registers the plugin (:class:`_PluginPath`). The package
also registers on import whenever fairseq is already loaded, and :func:`register` does it by hand.
"""
import os
import sys


def allow_fairseq_checkpoints() -> None:
    """Let ``torch.load(weights_only=True)`` (torch >= 2.6's default) read fairseq checkpoints,
    which pickle their options as an ``argparse.Namespace``."""
    import argparse

    import torch

    torch.serialization.add_safe_globals([argparse.Namespace])


def register() -> None:
    """Register the task, criterion and models with fairseq (idempotent; imports fairseq)."""
    import fairseq_defemb.models  # noqa: F401
    import fairseq_defemb.tasks  # noqa: F401


class _PluginPath(list):
    """The package's ``__path__``, answering fairseq's "already imported?" question by registering.

    fairseq 0.12's ``utils.import_user_module`` imports ``tasks/`` and ``models/`` only when the
    package is not in ``sys.modules`` yet; otherwise it checks ``user_dir in package.__path__`` and
    moves on. Registering here makes both orders work. Paths compare by their real path, so the
    spelling fairseq builds for a plugin installed beside it (``site-packages/fairseq/../fairseq_defemb``)
    is recognised too."""

    def __contains__(self, path: object) -> bool:
        found = isinstance(path, str) and any(os.path.realpath(path) == os.path.realpath(p) for p in self)
        if found:
            register()
        return found


__path__ = _PluginPath(__path__)

if "fairseq" in sys.modules:
    register()

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import fairseq_defemb  # noqa: E402,F401  (registers the plugin)
from tiny_corpus import make_tiny_corpus  # noqa: E402
from tiny_models import make_tiny_checkpoint  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """Tiny RoBERTa and BART checkpoints sharing one dictionary, and a corpus for it."""
    root = tmp_path_factory.mktemp("tiny")
    make_tiny_checkpoint(root / "roberta", "roberta")
    make_tiny_checkpoint(root / "bart", "bart", dict_path=root / "roberta" / "dict.txt")
    make_tiny_corpus(root / "corpus", root / "roberta" / "dict.txt")
    return root

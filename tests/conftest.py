import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import fairseq_defemb  # noqa: E402

fairseq_defemb.register()
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


def run_example(script: str, out: Path, *options: str, timeout: float, step_timeout: float = 900) -> None:
    """``examples/SCRIPT --budget ci --out OUT``, in its own process group: past ``timeout`` the
    whole group (the demo and the fairseq commands it started) is killed and the test fails with
    the output so far; past ``step_timeout`` the demo itself names the step that hung."""
    import signal
    import subprocess

    with open(out.parent / f"{script}.log", "w+") as log:
        process = subprocess.Popen([sys.executable, str(REPO / "examples" / script), "--budget", "ci", "--out", str(out),
                                    "--step-timeout", str(step_timeout), *options],
                                   stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            returncode = None
        log.seek(0)
        output = log.read()
    os.unlink(log.name)
    if returncode != 0:
        why = f"ran over {timeout:g} s and was killed" if returncode is None else f"exit {returncode}"
        pytest.fail(f"examples/{script} {why}; its output ends:\n{output[-4000:]}")

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    # One torch/BLAS thread per worker, for this process and every command a test starts: with the
    # workers filling the cores, OpenMP threads of two processes contending for them spin instead of
    # working (a CI-size demo's fairseq-train ran ~4x slower beside another worker's).
    # Before any import of torch, which reads it once.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

import fairseq_defemb  # noqa: E402

fairseq_defemb.register()
from tiny_corpus import make_tiny_corpus  # noqa: E402
from tiny_models import make_tiny_checkpoint  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent

# The files that take longest (`pytest --durations`, make test on 2 workers), longest first. make
# test hands whole files to the workers in collection order (--dist loadfile --no-loadscope-reorder):
# starting the longest ones first keeps one worker from running a 7-minute demo alone at the end
# (xdist's default order, most tests first, put these few-test files last).
LONGEST_FIRST = ("test_demo_bart.py", "test_corpus_build.py", "test_eval.py", "test_add_tokens.py", "test_demo.py",
                 "test_paper_recipes.py", "test_benchmarks.py", "test_docs_commands.py", "test_readme_recipes.py",
                 "test_hf_roundtrip.py", "test_train_and_predict.py", "test_fault_injection.py",
                 "test_definition_cloze.py", "test_bad_input.py", "test_surgery.py")


def pytest_collection_modifyitems(items: list) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's own order is kept


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """Tiny RoBERTa and BART checkpoints sharing one dictionary, and a corpus for it."""
    root = tmp_path_factory.mktemp("tiny")
    make_tiny_checkpoint(root / "roberta", "roberta")
    make_tiny_checkpoint(root / "bart", "bart", dict_path=root / "roberta" / "dict.txt")
    make_tiny_corpus(root / "corpus", root / "roberta" / "dict.txt")
    return root


def example_argv(command: str, out: Path, step_timeout: float) -> list[str]:
    """The argv of a docs command ``python examples/SCRIPT --budget ci ... --out DIR`` (one line),
    run by this interpreter with DIR replaced by ``out``."""
    import shlex

    argv = shlex.split(command, comments=True)
    assert argv[0] == "python" and argv[1].startswith("examples/") and "--budget" in argv and argv[-2] == "--out", (
        f"not a `python examples/SCRIPT --budget ... --out DIR` line: {command!r}")
    return [sys.executable, str(REPO / argv[1]), *argv[2:-1], str(out), "--step-timeout", str(step_timeout)]


def run_example(command: str, out: Path, *options: str, timeout: float, step_timeout: float = 900) -> None:
    """The docs' ``python examples/SCRIPT --budget ci --out DIR`` into ``out``, in its own process
    group: past ``timeout`` the whole group (the demo and the fairseq commands it started) is killed
    and the test fails with the output so far; past ``step_timeout`` the demo itself names the step
    that hung."""
    import signal
    import subprocess

    argv = example_argv(command, out, step_timeout)
    script = Path(argv[1]).name
    with open(out.parent / f"{script}.log", "w+") as log:
        process = subprocess.Popen([*argv, *options], stdout=log, stderr=subprocess.STDOUT, text=True,
                                   start_new_session=True)
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

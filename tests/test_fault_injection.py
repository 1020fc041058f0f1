"""kill -9 at any moment leaves nothing behind.

Each command runs as a subprocess (its own process group, as a shell job) and is killed with
SIGKILL at seeded moments spread over a normal run's duration, plus once while its temporary
sibling exists (polled). After every kill: the output is absent or complete (``--verify`` passes
for surgery; the corpus and the predictions equal a normal run's), and no input changed (SHA-256).
After one more normal run, no ``.OUT.tmp-*``/``.OUT.old-*`` sibling is left.
"""
import hashlib
import os
import random
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import psutil
import pytest
import torch

from conftest import VENV_BIN
from fairseq_defemb.data.embedding_file import PredictedEmbeddings
from fairseq_defemb.data.vocabulary import load_model_dictionary
from fairseq_defemb.surgery.swap import verify
from test_corpus_alignment import MINILM_VOCAB, write_wordpiece_dict
from test_definition_cloze import build_with_cfg
from test_surgery import save_predictions
from fairseq_defemb.convert.fairseq_checkpoint import save_model_checkpoint

SEED = 19
SPREAD_KILLS = 3  # seeded moments per command, uniform over (0.1, 1.0) of a normal run's duration
POLL_SECONDS = 0.002


@dataclass
class Command:
    argv: list[str]
    out: Path
    inputs: list[Path]
    complete: Callable[[Path], None]  # asserts that an existing output is the complete one


def sha256_tree(paths: list[Path]) -> dict[str, str]:
    digests = {}
    for root in paths:
        for path in sorted([root] if root.is_file() else root.rglob("*")):
            if path.is_file():
                digests[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith((f".{out.name}.tmp-", f".{out.name}.old-")))


def start(command: Command) -> subprocess.Popen:
    return subprocess.Popen(command.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def kill(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)  # the whole job, as `kill -9 -PGID` or the OOM killer would
    except ProcessLookupError:
        pass
    process.wait()


def normal_run(command: Command) -> float:
    began = time.perf_counter()
    process = start(command)
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err.decode()[-3000:]
    return time.perf_counter() - began


def kill_while_temporary_exists(command: Command) -> bool:
    """SIGKILL as soon as a temporary sibling of the output appears; True if one was caught."""
    process = start(command)
    while process.poll() is None:
        if any(p.name.startswith(f".{command.out.name}.tmp-{process.pid}-") for p in command.out.parent.iterdir()):
            kill(process)
            return True
        time.sleep(POLL_SECONDS)
    return False


def check_after_kill(command: Command, hashes: dict[str, str], moment: str) -> None:
    assert sha256_tree(command.inputs) == hashes, f"an input changed after a kill at {moment}"
    if command.out.exists():
        command.complete(command.out)


def exercise(command: Command, rng: random.Random) -> dict:
    """The kills, their checks and the final run; returns what happened, for the assertions."""
    hashes = sha256_tree(command.inputs)
    duration = normal_run(command)
    command.complete(command.out)
    # the first kills find no output; once one of them finishes, the rest replace it (--overwrite)
    shutil.rmtree(command.out) if command.out.is_dir() else command.out.unlink()
    moments = sorted(rng.uniform(0.1, 1.0) * duration for _ in range(SPREAD_KILLS))
    for moment in moments:
        process = start(command)
        time.sleep(moment)
        kill(process)
        check_after_kill(command, hashes, f"{moment:.2f} s of {duration:.2f} s")
    caught = kill_while_temporary_exists(command)
    check_after_kill(command, hashes, "the temporary's first moment")
    left = leftovers(command.out)
    normal_run(command)
    command.complete(command.out)
    assert leftovers(command.out) == [], f"left behind after a normal run: {leftovers(command.out)}"
    assert sha256_tree(command.inputs) == hashes
    return {"caught": caught, "left_after_kills": left}


# -- the commands --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def surgery_inputs(tiny_dir, tmp_path_factory):
    """The tiny BART grown by an unused 40 MB tensor, so writing the copy takes long enough to be
    killed in the middle of; predictions at the checkpoint's scale; task data."""
    from fairseq.data import indexed_dataset
    import numpy as np

    root = tmp_path_factory.mktemp("surgery-inputs")
    state = torch.load(tiny_dir / "bart" / "model.pt", map_location="cpu", weights_only=False)
    state["model"]["encoder.unused_padding"] = torch.randn(10_000_000)
    (root / "plm").mkdir()
    torch.save(state, root / "plm" / "model.pt")
    (root / "plm" / "dict.txt").write_bytes((tiny_dir / "bart" / "dict.txt").read_bytes())
    d = load_model_dictionary(root / "plm" / "dict.txt")
    words = "quagga okapi dugong zebu emu gnu yak".split()
    ids = [d.index(w) for w in words]
    E = state["model"]["encoder.embed_tokens.weight"]
    save_predictions(root / "defemb.pt", d, root / "plm" / "dict.txt", ids,
                     E[ids] + 0.5 * torch.randn(len(ids), E.size(1), generator=torch.Generator().manual_seed(0)) * 0.02)
    (root / "task").mkdir()
    builder = indexed_dataset.MMapIndexedDatasetBuilder(str(root / "task" / "train.bin"), dtype=np.uint16)
    builder.add_item(torch.tensor(ids))
    builder.finalize(str(root / "task" / "train.idx"))
    return root


@pytest.mark.slow
def test_surgery_killed_at_any_moment(surgery_inputs, tmp_path):
    root = surgery_inputs
    out = tmp_path / "plm.defemb"

    def complete(path: Path) -> None:
        ok, problems = verify(path, root / "plm")
        assert ok, problems

    command = Command([str(VENV_BIN / "defemb-surgery"), "--checkpoint", str(root / "plm" / "model.pt"),
                       "--embeddings", str(root / "defemb.pt"), "--task-data", str(root / "task"), "--alpha", "100",
                       "--no-isotropy", "--out", str(out), "--overwrite"],
                      out, [root], complete)
    happened = exercise(command, random.Random(SEED))
    # the 40 MB copy leaves a window: the kill inside it left a temporary, the next run removed it
    assert happened["caught"] and happened["left_after_kills"], happened


@pytest.mark.slow
def test_corpus_killed_at_any_moment(tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    vocab = write_wordpiece_dict(inputs / "dict.txt")
    tsv = inputs / "manual.tsv"
    tsv.write_text("".join(f"Word{i}x\tn.\tthe {i}th test word of a small manual list of words made up for this test\n"
                           for i in range(3000)))
    argv = [str(VENV_BIN / "defemb-corpus"), "--vocab", str(vocab), "--bpe", "wordpiece", "--wordpiece-vocab",
            str(MINILM_VOCAB), "--lowercase", "--source", "manual,numbers", "--manual-tsv", str(tsv), "--valid-size", "0.1",
            "--workers", "1", "--no-progress", "--overwrite"]
    reference = tmp_path / "reference"
    normal_run(Command([*argv, "--out", str(reference)], reference, [], lambda path: None))
    binary = {p.name: p.read_bytes() for p in reference.iterdir() if p.suffix not in (".json", ".md")}

    def complete(path: Path) -> None:
        assert sorted(p.name for p in path.iterdir()) == sorted(p.name for p in reference.iterdir())
        assert {name: (path / name).read_bytes() for name in binary} == binary  # deterministic: a normal run's bytes

    out = tmp_path / "work" / "defs-bin"
    exercise(Command([*argv, "--out", str(out)], out, [inputs, MINILM_VOCAB], complete), random.Random(SEED + 1))


@pytest.mark.slow
def test_corpus_worker_killed_exits_2_and_leaves_nothing(tmp_path):
    # A worker killed (the OOM killer, say) once meant a pool waiting for ever; now the command ends
    # with exit 2 naming the cause, and its output never appears.
    vocab = write_wordpiece_dict(tmp_path / "dict.txt")
    tsv = tmp_path / "manual.tsv"
    tsv.write_text("".join(f"Word{i}x\tn.\tthe {i}th test word of a long manual list of words made up for this test\n"
                           for i in range(60000)))
    out = tmp_path / "defs-bin"
    process = start(Command([str(VENV_BIN / "defemb-corpus"), "--vocab", str(vocab), "--bpe", "wordpiece",
                             "--wordpiece-vocab", str(MINILM_VOCAB), "--lowercase", "--source", "manual", "--manual-tsv",
                             str(tsv), "--workers", "2", "--no-progress", "--out", str(out)], out, [], lambda path: None))
    deadline = time.monotonic() + 120
    main = psutil.Process(process.pid)
    # the pool's workers are the forkserver's children: the command's grandchildren
    while not (workers := [w for helper in main.children() for w in helper.children()]):
        assert process.poll() is None and time.monotonic() < deadline, "no worker process appeared"
        time.sleep(POLL_SECONDS)
    workers[0].kill()
    try:
        _, err = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        kill(process)
        pytest.fail("defemb-corpus hung after one of its workers was killed")
    assert process.returncode == 2, err
    assert "defemb-corpus: error: a worker process died" in err.decode()
    assert not out.exists() and leftovers(out) == []


@pytest.mark.slow
def test_predict_killed_at_any_moment(tiny_dir, tmp_path):
    task, model, _, cfg = build_with_cfg(tiny_dir, "roberta")
    checkpoint = save_model_checkpoint(model, cfg, tmp_path / "inputs" / "checkpoint_best.pt")
    argv = [str(VENV_BIN / "defemb-predict"), "--checkpoint", str(checkpoint), "--corpus", str(tiny_dir / "corpus"),
            "--device", "cpu", "--no-progress"]
    reference = tmp_path / "reference.pt"
    normal_run(Command([*argv, "--out", str(reference)], reference, [], lambda path: None))
    expected = PredictedEmbeddings.load(reference)

    def complete(path: Path) -> None:
        got = PredictedEmbeddings.load(path)
        assert torch.equal(got.token_ids, expected.token_ids) and torch.equal(got.embeddings, expected.embeddings)

    out = tmp_path / "work" / "defemb.pt"
    exercise(Command([*argv, "--out", str(out)], out, [checkpoint.parent, tiny_dir / "corpus"], complete),
             random.Random(SEED + 2))


@pytest.mark.slow
def test_add_tokens_killed_at_any_moment(tmp_path):
    from test_add_tokens import WORDS, gpt2_plm

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    plm = gpt2_plm(inputs)
    (inputs / "words.tsv").write_text(WORDS)
    argv = [str(VENV_BIN / "defemb-add-tokens"), "--checkpoint", str(plm), "--words", str(inputs / "words.tsv"),
            "--init", "description-mean", "--overwrite"]
    reference = tmp_path / "reference"
    normal_run(Command([*argv, "--out", str(reference)], reference, [], lambda path: None))
    expected = {name: (reference / name).read_bytes() for name in ("dict.txt", "encoder.json")}
    expected_model = torch.load(reference / "model.pt", map_location="cpu", weights_only=False)["model"]

    def complete(path: Path) -> None:
        assert sorted(p.name for p in path.iterdir()) == sorted(p.name for p in reference.iterdir())
        assert {name: (path / name).read_bytes() for name in expected} == expected
        model = torch.load(path / "model.pt", map_location="cpu", weights_only=False)["model"]
        assert model.keys() == expected_model.keys() and all(torch.equal(model[k], expected_model[k]) for k in model)

    out = tmp_path / "work" / "plm-added"
    exercise(Command([*argv, "--out", str(out)], out, [inputs], complete), random.Random(SEED + 3))

"""The demos' command runner: a step that hangs names itself and leaves no process behind."""
import os
import sys
import time

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "examples"))
from demo_support import Step, training_curve  # noqa: E402


def test_a_step_past_its_timeout_is_killed_with_its_workers_named_and_its_stacks_shown(tmp_path):
    pid_file = tmp_path / "child.pid"
    # The command starts a worker of its own (as fairseq-preprocess --workers does) and hangs.
    script = (f"import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
              f"open({str(pid_file)!r}, 'w').write(str(p.pid)); print('started', flush=True); time.sleep(60)")
    step = Step(tmp_path / "work", timeout=1.5)
    began = time.perf_counter()
    with pytest.raises(SystemExit) as stopped:
        step.run("hanging step", [sys.executable, "-c", script])
    assert time.perf_counter() - began < 30
    assert "step 'hanging step' ran over the 1.5 s step timeout" in str(stopped.value) and "started" in str(stopped.value)
    worker = int(pid_file.read_text())
    for _ in range(100):  # killed with its group; the kernel reaps it once its parent is gone
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"the step's worker {worker} outlived the timeout")
    log = (tmp_path / "work" / "logs" / "hanging_step.log").read_text()
    assert log.startswith("started")
    # where it hung: faulthandler's stacks, from the SIGABRT before the SIGKILL, the two processes'
    # one after the other (sent together, their dumps interleaved character by character)
    dumps = log.split("Fatal Python error: Aborted")
    assert len(dumps) == 3 and all('File "<string>", line 1 in <module>' in dump for dump in dumps[1:]), log


def test_a_failing_step_exits_with_its_code_and_a_quick_one_returns_its_log(tmp_path):
    step = Step(tmp_path / "work", timeout=60)
    assert step.run("echo", [sys.executable, "-c", "print('hello')"]) == "hello\n"
    with pytest.raises(SystemExit) as stopped:
        step.run("fail", [sys.executable, "-c", "import sys; print('bad input'); sys.exit(3)"])
    assert "step 'fail' failed (exit 3)" in str(stopped.value) and "bad input" in str(stopped.value)


def test_training_curve_reads_the_validation_cosine_when_logged():
    log = ("2026 | INFO | train_inner | epoch 001:  10 / 20 loss=1.5, cosine=0.1, num_updates=10\n"
           "2026 | INFO | valid | epoch 001 | valid on 'valid' subset | loss 1.4 | cosine 0.2 | wps 9 | num_updates 10\n"
           "2026 | INFO | valid | epoch 001 | valid on 'valid' subset | loss 1.3 | num_updates 20\n")
    curve = training_curve(log)
    assert curve["loss"] == [1.5] and curve["cosine"] == [0.1]
    assert curve["valid_loss"] == [1.4, 1.3] and curve["valid_update"] == [10, 20] and curve["valid_cosine"] == [0.2]

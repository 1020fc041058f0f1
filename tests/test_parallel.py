"""fairseq_defemb.parallel.ordered_map: input order, lazy reading, errors re-raised, a dead worker
raises instead of hanging, and workers that do not inherit the parent's state by fork."""
import multiprocessing
import os
import signal
import subprocess
import sys
import threading

import pytest

from fairseq_defemb.parallel import WorkerDied, chunks, ordered_map

STATE = "imported"
_factor = 1


def _set_factor(factor: int) -> None:
    global _factor
    _factor = factor


def _scaled(x: int) -> int:
    return x * _factor


def _fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("three")
    return x


def _die_on_three(x: int) -> int:
    if x == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def _die_at_start(_) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _fail_at_start(_) -> None:
    raise OSError("no such vocabulary")


def _state(_) -> str:
    return STATE


def test_chunks():
    assert list(chunks(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(chunks([], 3)) == []


def test_results_in_input_order_with_each_worker_initialized():
    assert list(ordered_map(_scaled, range(50), 2, initializer=_set_factor, initargs=(3,))) == [3 * x for x in range(50)]


def test_input_is_read_lazily():
    read = []

    def items():
        for x in range(100):
            read.append(x)
            yield x

    results = ordered_map(_scaled, items(), 2, ahead=3)
    assert next(results) == 0
    # the first result is waited for once 3 items per worker are in flight, not after all 100
    assert len(read) == 6
    assert list(results) == list(range(1, 100)) and len(read) == 100


def test_an_exception_in_a_worker_is_raised_here():
    with pytest.raises(ValueError, match="three"):
        list(ordered_map(_fail_on_three, range(10), 2))


@pytest.mark.parametrize("when", ["working", "starting"])
def test_a_dead_worker_raises_instead_of_hanging(when):
    # multiprocessing.Pool.imap waits for ever on a worker killed while working, and Python 3.11's
    # ProcessPoolExecutor could on one killed while another starts; the map runs in a thread so a
    # regression fails instead of hanging the suite
    outcome = []
    work = {"working": dict(function=_die_on_three),
            "starting": dict(function=_scaled, initializer=_die_at_start, initargs=(None,))}[when]

    def run():
        try:
            list(ordered_map(items=range(10), workers=2, **work))
        except Exception as err:  # noqa: BLE001 (the test inspects whatever came out)
            outcome.append(err)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive(), "ordered_map hung on a killed worker"
    assert len(outcome) == 1 and isinstance(outcome[0], WorkerDied), outcome
    assert "fewer workers" in str(outcome[0])


def test_an_exception_in_the_initializer_is_raised_here_with_its_traceback():
    with pytest.raises(OSError, match="no such vocabulary") as raised:
        list(ordered_map(_scaled, range(10), 2, initializer=_fail_at_start, initargs=(None,)))
    assert "_fail_at_start" in str(raised.value.__cause__)


def test_abandoning_the_iteration_stops_the_workers():
    results = ordered_map(_scaled, range(1000), 2)
    assert next(results) == 0
    results.close()
    assert not multiprocessing.active_children()


def test_workers_are_not_forks_of_this_process():
    # a forked worker would see this process's runtime state (and any lock its threads hold)
    global STATE
    STATE = "changed in the parent after import"
    try:
        assert set(ordered_map(_state, range(4), 2)) == {"imported"}
    finally:
        STATE = "imported"


def test_a_script_without_a_main_guard_fails_and_says_why(tmp_path):
    # forkserver workers import the calling script again; unguarded, it would start workers from
    # inside that import, which Python refuses: the run must end with the cause, not hang
    script = tmp_path / "unguarded.py"
    script.write_text("from fairseq_defemb.parallel import ordered_map\nprint(list(ordered_map(abs, range(-4, 0), 2)))\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 1
    assert "WorkerDied" in done.stderr and 'if __name__ == "__main__":' in done.stderr
    assert "bootstrapping phase" in done.stderr  # Python's own explanation, from the worker

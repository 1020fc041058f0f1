"""Atomic outputs leave nothing behind, clean up after killed runs, and follow the umask."""
import os
import signal
import stat
import subprocess
import sys
import textwrap

import pytest

from fairseq_defemb.atomic_io import atomic_output_dir, atomic_output_file, remove_stale_siblings, write_text


def siblings(root, name):
    return sorted(p.name for p in root.iterdir() if p.name.startswith(f".{name}."))


def test_failed_block_leaves_nothing_and_keeps_the_old_output(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_output_dir(out, overwrite=True) as tmp:
            (tmp / "new.txt").write_text("half")
            raise RuntimeError("crash")
    assert (out / "old.txt").read_text() == "old" and not (out / "new.txt").exists()
    assert siblings(tmp_path, "out") == []


def test_outputs_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_output_dir(tmp_path / "d") as tmp:
            (tmp / "f").write_text("x")
        write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o644


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_stale_siblings_of_killed_runs_are_removed_live_ones_kept(tmp_path):
    stale_dir = tmp_path / f".out.tmp-{dead_pid()}-abcd"
    stale_dir.mkdir()
    (stale_dir / "model.pt").write_bytes(b"0" * 1000)
    stale_file = tmp_path / f".out.tmp-{dead_pid()}-efgh"
    stale_file.write_text("partial")
    live = tmp_path / f".out.tmp-{os.getppid()}-live"  # the test runner's parent is alive
    live.mkdir()
    other = tmp_path / f".other.tmp-{dead_pid()}-x"  # another output's: not ours to touch
    other.mkdir()
    removed = remove_stale_siblings(tmp_path / "out")
    assert sorted(removed) == sorted([stale_dir, stale_file])
    assert live.exists() and other.exists()
    with atomic_output_file(tmp_path / "out") as tmp:
        tmp.write_text("done")
    assert (tmp_path / "out").read_text() == "done"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_terminated_writer_removes_its_temporary(tmp_path, sig):
    # A Ctrl-C at a terminal: Python ignores SIGINT when it starts with it ignored (a background job
    # of a non-interactive shell, as CI may run us), so the child restores the interactive default.
    script = textwrap.dedent(f"""
        import signal, sys, time
        from fairseq_defemb.atomic_io import atomic_output_dir, exit_on_sigterm
        signal.signal(signal.SIGINT, signal.default_int_handler)
        exit_on_sigterm()
        with atomic_output_dir({str(tmp_path / 'out')!r}) as tmp:
            (tmp / "x").write_text("partial")
            print("ready", flush=True)
            time.sleep(60)
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(sig)
    assert process.wait(timeout=60) != 0
    assert not (tmp_path / "out").exists() and siblings(tmp_path, "out") == []

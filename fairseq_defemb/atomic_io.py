"""Atomic, durable outputs: a reader never sees a half-written file or directory.

Every tool writes into a temporary sibling (``.NAME.tmp-PID-XXXX``) and renames it into place,
so a crash or Ctrl-C leaves the previous output (or nothing) behind, never a mix:

* **No leftovers.** The temporary is removed on every exit the process controls (exceptions,
  Ctrl-C, and SIGTERM once :func:`exit_on_sigterm` is installed, as every command does). A
  SIGKILL or a power cut cannot be caught: the next run that writes the same output removes the
  siblings such runs left (their PID is dead), and says so in the log.
* **Durable.** Files are fsynced before the rename and the parent directory after it, so after
  a power loss the output is either the old one or the complete new one.
* **Permissions** follow the umask, like any file the user creates (``mkdtemp``/``mkstemp``
  would otherwise leave 0700/0600 outputs that a shared group cannot read).
"""
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

logger = logging.getLogger(__name__)


def exit_on_sigterm() -> None:
    """Turn SIGTERM into ``SystemExit(143)`` so cleanup handlers run (call from a main thread)."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_siblings(final: Path) -> list[Path]:
    """Remove ``.NAME.tmp-*``/``.NAME.old-*`` siblings of ``final`` whose writing process is dead."""
    removed = []
    pattern = re.compile(rf"^\.{re.escape(final.name)}\.(tmp|old)-(\d+)(-|$)")
    if not final.parent.is_dir():
        return removed
    for sibling in final.parent.iterdir():
        match = pattern.match(sibling.name)
        if match is None or int(match.group(2)) == os.getpid() or _pid_alive(int(match.group(2))):
            continue
        if sibling.is_dir() and not sibling.is_symlink():
            shutil.rmtree(sibling, ignore_errors=True)
        else:
            sibling.unlink(missing_ok=True)
        logger.info("removed %s, left by a killed run (process %s is gone)", sibling, match.group(2))
        removed.append(sibling)
    return removed


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for parent, _dirs, files in os.walk(root):
        for name in files:
            _fsync_path(Path(parent) / name)
        _fsync_path(Path(parent))


@contextlib.contextmanager
def atomic_output_dir(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``path`` only if the block succeeds.

    An existing ``path`` is an error unless ``overwrite``; even then it is swapped
    out only after the new directory is complete.
    """
    final = Path(path)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final}: output directory exists; pick a new --out or pass --overwrite")
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_siblings(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-{os.getpid()}-", dir=final.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        _fsync_tree(tmp)
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, final)
        _fsync_path(final.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_output_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary file path in the same directory; rename it to ``path`` on success."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_siblings(final)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.tmp-{os.getpid()}-", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        yield tmp
        _fsync_path(tmp)
        os.replace(tmp, final)
        _fsync_path(final.parent)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def naming_failed_writes(path: str | Path) -> Iterator[None]:
    """Name ``path`` in a failed write's error: a full disk or a file size limit fails a write with
    a bare ``[Errno 28]``/``[Errno 27]`` that names no file when the writer opened it itself
    (matplotlib's PNG writer, ``Path.write_text``)."""
    try:
        yield
    except OSError as err:
        if err.filename is not None:
            raise
        raise OSError(f"{path}: could not be written ({err}); is the disk full?") from None


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_output_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def write_text(path: str | Path, text: str) -> None:
    with atomic_output_file(path) as tmp:
        tmp.write_text(text)


def torch_save(obj: Any, path: str | Path) -> None:
    import torch

    with atomic_output_file(path) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as err:  # torch reports a failed write (disk full, file size limit) this way
            raise OSError(f"{path}: could not be written ({err}); is the disk full?") from None

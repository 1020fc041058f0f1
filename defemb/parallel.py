"""An ordered map over worker processes that cannot hang silently: :func:`ordered_map`.

``multiprocessing.Pool`` with Linux's default ``fork`` has two ways to wait for ever: a worker
that dies (the OOM killer, a signal) takes its task with it and ``imap`` never returns; and
forking a process that already runs threads (torch's, OpenBLAS's, tqdm's monitor) copies
whatever lock one of them held into a child where nothing will release it. A CI run of
``defemb-corpus --workers 2`` once sat 900 s in such a pool. Here the workers come from a
``forkserver`` (a clean single-threaded process) and a dead worker raises :class:`WorkerDied`.
"""
import multiprocessing
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from itertools import islice
from typing import Any, Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class WorkerDied(RuntimeError):
    """A worker process ended without returning its result (killed, or crashed in C code)."""


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last one shorter)."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def ordered_map(function: Callable[[T], R], items: Iterable[T], workers: int, *,
                initializer: Callable[..., Any] | None = None, initargs: tuple = (),
                ahead: int = 4) -> Iterator[R]:
    """``map(function, items)`` on ``workers`` processes, results in input order.

    ``items`` is read lazily in this thread, at most ``ahead`` items per worker ahead of the
    result being waited for, so a large input is never all in flight. ``function`` and
    ``initializer`` must be module-level (they are pickled by reference); each worker runs
    ``initializer(*initargs)`` once. An exception in ``function`` is re-raised here with the
    worker's traceback; a worker that dies raises :class:`WorkerDied`."""
    context = multiprocessing.get_context("forkserver")
    pending: deque[Future] = deque()
    with ProcessPoolExecutor(workers, mp_context=context, initializer=initializer, initargs=initargs) as pool:
        try:
            for item in items:
                pending.append(pool.submit(function, item))
                if len(pending) >= ahead * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        except BrokenProcessPool as err:
            raise WorkerDied(f"a worker process died before returning its result ({err}): it was killed (out of "
                             "memory? use fewer workers), or a script started it without keeping its work under "
                             "`if __name__ == \"__main__\":` (the workers import it again; Python's error above "
                             "says so)") from err
        finally:
            # on an error or an abandoned iteration, queued work is dropped instead of run to the end
            for future in pending:
                future.cancel()

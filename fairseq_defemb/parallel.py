"""An ordered map over worker processes that cannot hang silently: :func:`ordered_map`.

``multiprocessing.Pool`` with Linux's default ``fork`` has three ways to wait for ever: a worker
that dies (the OOM killer, a signal) takes its task with it and ``imap`` never returns; forking a
process that already runs threads (torch's, OpenBLAS's, tqdm's monitor) copies whatever lock one
of them held into a child where nothing will release it; and ``terminate()`` after an error can
block on the helper thread that is still feeding it a lazy input. A CI run of
``defemb-corpus --workers 2`` once sat 900 s in such a pool. ``ProcessPoolExecutor`` (Python
3.11) was tried next: when a worker died while another was still being started, its shutdown
joined that new worker, which nobody had told to stop (1 run in 15 here).

So the pool here is small and explicit: every worker is started from a ``forkserver`` (a clean
single-threaded process) before any work is sent, gets its items on its own queue in turn
(round robin, so item k's result comes from worker k mod n, in order) and answers on its own
pipe. The caller reads that pipe or sees the worker's exit: a dead worker raises
:class:`WorkerDied`, and any end of the iteration stops every worker.
"""
import multiprocessing
import traceback
from itertools import islice
from multiprocessing.connection import wait
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


class RemoteTraceback(Exception):
    """The worker's traceback, as the ``__cause__`` of an exception re-raised from it."""

    def __str__(self) -> str:
        return self.args[0]


def _serve(function: Callable, initializer: Callable | None, initargs: tuple, tasks, results) -> None:
    """A worker: the initializer once, then ``function`` on each item of ``tasks`` until None; each
    result (or the exception, with its traceback) is sent on ``results``. A failed initializer is
    the answer to the first item."""
    try:
        if initializer is not None:
            initializer(*initargs)
        while (item := tasks.get()) is not None:
            results.send((True, function(item)))
    except Exception as err:  # noqa: BLE001 (every error is the caller's to raise)
        text = traceback.format_exc()
        try:
            results.send((False, err, text))
        except Exception:  # noqa: BLE001 (an exception that does not pickle)
            results.send((False, RuntimeError(repr(err)), text))


def _died(detail: str) -> WorkerDied:
    return WorkerDied(f"a worker process died before returning its result ({detail}): it was killed (out of "
                      "memory? use fewer workers), or a script started it without keeping its work under "
                      "`if __name__ == \"__main__\":` (the workers import it again; Python's error above says so)")


def ordered_map(function: Callable[[T], R], items: Iterable[T], workers: int, *,
                initializer: Callable[..., Any] | None = None, initargs: tuple = (),
                ahead: int = 4) -> Iterator[R]:
    """``map(function, items)`` on ``workers`` processes, results in input order.

    ``items`` is read lazily in this thread, at most ``ahead`` items per worker ahead of the
    result being waited for, so a large input is never all in flight. ``function`` and
    ``initializer`` must be module-level (they are pickled by reference); each worker runs
    ``initializer(*initargs)`` once. An exception in ``function`` or ``initializer`` is re-raised
    here with the worker's traceback as its cause; a worker that dies raises :class:`WorkerDied`."""
    context = multiprocessing.get_context("forkserver")
    processes, queues, pipes = [], [], []
    finished = False
    try:
        for _ in range(workers):
            receive, send = context.Pipe(duplex=False)
            queue = context.Queue()
            process = context.Process(target=_serve, args=(function, initializer, initargs, queue, send), daemon=True)
            processes.append(process)
            queues.append(queue)
            pipes.append(receive)
            try:
                process.start()
            except (OSError, EOFError) as err:  # the forkserver itself failed (an unguarded script)
                raise _died(f"it could not be started: {err!r}") from err
            send.close()  # the worker holds the only writing end: its death is this pipe's end of file

        def result(k: int):
            pipe, process = pipes[k % workers], processes[k % workers]
            wait([pipe, process.sentinel])
            try:
                # an answer sent just before the worker exited is still read
                answer = pipe.recv() if pipe.poll() else None
            except EOFError:
                answer = None
            if answer is None:
                process.join(timeout=5)
                raise _died(f"worker {k % workers}, exit code {process.exitcode}")
            if answer[0]:
                return answer[1]
            err = answer[1]
            err.__cause__ = RemoteTraceback(answer[2])
            raise err

        sent = received = 0
        for item in items:
            queues[sent % workers].put(item)
            sent += 1
            if sent - received >= ahead * workers:
                yield result(received)
                received += 1
        while received < sent:
            yield result(received)
            received += 1
        finished = True
    finally:
        for queue, process in zip(queues, processes):
            if finished and process.is_alive():
                queue.put(None)
            # a queue whose worker is gone may hold unread items: do not wait to flush them
            queue.cancel_join_thread()
            queue.close()
        for process in processes:
            if process.pid is None:
                continue
            process.join(timeout=10 if finished else 0)
            if process.is_alive():  # abandoned, failed or stuck: stopped, never waited for
                process.kill()
                process.join()

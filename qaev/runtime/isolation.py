"""A crash- and hang-safe process runner with pymoo's runner interface ``runner(f, X)``.

Each worker process takes one task at a time, so when a worker dies (a crash inside ONNX
Runtime, the OOM killer) or a task runs past ``timeout``, the runner knows exactly which
candidate it was: that candidate gets a failure record with the reason, the worker is
replaced, and the other candidates carry on.

The time limit counts the candidate's own evaluation only: a fresh worker first prepares
(``f.warm()``: it rebuilds the problem, which takes seconds) and says when it starts. The
workers ignore Ctrl-C (the parent stops them) and end on their own within a second when
the parent is gone, however it went (a SIGKILL included), so none is left behind.
"""
from __future__ import annotations

import multiprocessing
import pickle
import queue
import time
from typing import Callable, Sequence

__all__ = ["IsolatedRunner"]

_POLL_S = 0.5  # how often an idle worker checks that its parent is alive


def _quiet_worker() -> None:
    import os
    import signal
    import warnings

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    warnings.simplefilter("ignore")  # the parent said it all when it built the same problem
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent decides


def _next_task(tasks, parent: int):
    """The next task, or None when told to stop or when the parent process is gone."""
    import os

    while True:
        try:
            return tasks.get(timeout=_POLL_S)
        except queue.Empty:
            if os.getppid() != parent:
                return None


def _worker_loop(tasks, results, worker_id: int, parent: int) -> None:
    _quiet_worker()
    while True:
        item = _next_task(tasks, parent)
        if item is None:
            return
        index = None
        try:
            index, f, x = pickle.loads(item)
            warm = getattr(f, "warm", None)
            if warm is not None:
                warm()
            results.put(("start", worker_id, index))
            value = pickle.dumps(f(x))  # a result that cannot be sent back fails here too
            results.put(("done", worker_id, index, True, value))
        except BaseException as exc:  # reported as this candidate's failure, never fatal
            results.put(("done", worker_id, index, False, f"{type(exc).__name__}: {exc}"))


class IsolatedRunner:
    """Evaluate ``f(x)`` for each ``x`` in worker processes, one task per worker at a time.

    Args:
        workers: number of processes.
        timeout: seconds one task's evaluation may run before its worker is killed (None:
            no limit); a worker's start-up does not count.

    ``f`` must be picklable and offer ``f.failure(x, reason, limit_s=None) -> result`` to
    turn a crashed or timed-out task into a result, and may offer ``f.warm()`` to prepare a
    fresh worker (see :class:`qaev.runtime.parallel.RemoteEvaluation`).
    """

    def __init__(self, *, workers: int = 2, timeout: float | None = None) -> None:
        self.workers = max(1, int(workers))
        self.timeout = timeout
        self._ctx = multiprocessing.get_context("spawn")
        self._results = self._ctx.Queue()
        self._procs: dict[int, tuple] = {}
        self._next_id = 0

    def _spawn(self) -> int:
        import os

        wid = self._next_id
        self._next_id += 1
        tasks = self._ctx.Queue()
        proc = self._ctx.Process(target=_worker_loop, args=(tasks, self._results, wid, os.getpid()), daemon=True)
        proc.start()
        self._procs[wid] = (proc, tasks)
        return wid

    def _kill(self, wid: int) -> None:
        proc, _ = self._procs.pop(wid)
        if proc.is_alive():
            proc.kill()
        proc.join(timeout=5)

    def _send(self, f: Callable, X: Sequence, pending: list, running: dict, out: list) -> int:
        """Give each idle worker a task; returns how many tasks failed to be sent."""
        failed = 0
        for wid in list(self._procs):
            if wid in running or not pending:
                continue
            index = pending.pop(0)
            try:  # a task that cannot be sent fails here, not silently in the queue's thread
                task = pickle.dumps((index, f, X[index]))
            except Exception as exc:
                out[index] = f.failure(X[index], f"cannot send the candidate to a worker: {exc}")
                failed += 1
                continue
            self._procs[wid][1].put(task)
            running[wid] = (index, None)  # started: None until the worker says it began
        return failed

    def _receive(self, f: Callable, X: Sequence, running: dict, out: list) -> int:
        """Take one message from the workers (waiting briefly); returns finished tasks."""
        try:
            message = self._results.get(timeout=0.05)
        except queue.Empty:
            return 0
        wid, index = message[1], message[2]
        if index is None:  # the task could not even be read in the worker
            index = running.get(wid, (None,))[0]
        if index is None or running.get(wid, (None,))[0] != index:
            return 0  # from a worker already given up on
        if message[0] == "start":
            running[wid] = (index, time.monotonic())
            return 0
        ok, value = message[3], message[4]
        del running[wid]
        out[index] = pickle.loads(value) if ok else f.failure(X[index], value)
        return 1

    def _reap(self, f: Callable, X: Sequence, running: dict, out: list) -> int:
        """Fail the tasks of dead workers and of those past the time limit; returns how many."""
        now, failed = time.monotonic(), 0
        for wid, (index, started) in list(running.items()):
            proc = self._procs[wid][0]
            if not proc.is_alive():
                reason, limit = f"worker process died (exit code {proc.exitcode}) while evaluating this candidate", None
            elif self.timeout is not None and started is not None and now - started > self.timeout:
                reason, limit = f"evaluation timed out after {self.timeout:g} s", self.timeout
            else:
                continue
            del running[wid]
            self._kill(wid)
            self._spawn()
            out[index] = f.failure(X[index], reason, limit_s=limit) if limit else f.failure(X[index], reason)
            failed += 1
        return failed

    def __call__(self, f: Callable, X: Sequence) -> list:
        while len(self._procs) < self.workers:
            self._spawn()
        pending = list(range(len(X)))
        running: dict[int, tuple[int, float | None]] = {}  # worker -> (task index, start of its evaluation)
        out: list = [None] * len(X)
        done = 0
        while done < len(X):
            done += self._send(f, X, pending, running, out)
            done += self._receive(f, X, running, out)
            done += self._reap(f, X, running, out)
        return out

    def close(self) -> None:
        """Stop every worker."""
        for _wid, (_proc, tasks) in list(self._procs.items()):
            tasks.put(None)
        for wid in list(self._procs):
            proc, _ = self._procs[wid]
            proc.join(timeout=2)
            self._kill(wid)

    def __getstate__(self):
        raise TypeError("IsolatedRunner is not picklable")

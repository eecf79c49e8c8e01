"""A crash- and hang-safe process runner with pymoo's runner interface ``runner(f, X)``.

Each worker process takes one task at a time, so when a worker dies (a crash inside ONNX
Runtime, the OOM killer) or a task runs past ``timeout``, the runner knows exactly which
candidate it was: that candidate gets a failure record with the reason, the worker is
replaced, and the other candidates carry on.
"""
from __future__ import annotations

import multiprocessing
import pickle
import queue
import time
from typing import Callable, Sequence

__all__ = ["IsolatedRunner"]


def _worker_loop(tasks, results, worker_id: int) -> None:
    import os
    import warnings

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    warnings.simplefilter("ignore")  # the parent said it all when it built the same problem
    while True:
        item = tasks.get()
        if item is None:
            return
        try:
            index, f, x = pickle.loads(item)
            value = pickle.dumps(f(x))  # a result that cannot be sent back fails here too
            results.put((worker_id, index, True, value))
        except BaseException as exc:  # reported as this candidate's failure, never fatal
            results.put((worker_id, index, False, f"{type(exc).__name__}: {exc}"))


class IsolatedRunner:
    """Evaluate ``f(x)`` for each ``x`` in worker processes, one task per worker at a time.

    Args:
        workers: number of processes.
        timeout: seconds one task may run before its worker is killed (None: no limit).

    ``f`` must be picklable and offer ``f.failure(x, reason) -> result`` to turn a
    crashed or timed-out task into a result (see :class:`qaev.runtime.parallel.RemoteEvaluation`).
    """

    def __init__(self, *, workers: int = 2, timeout: float | None = None) -> None:
        self.workers = max(1, int(workers))
        self.timeout = timeout
        self._ctx = multiprocessing.get_context("spawn")
        self._results = self._ctx.Queue()
        self._procs: dict[int, tuple] = {}
        self._next_id = 0

    def _spawn(self) -> int:
        wid = self._next_id
        self._next_id += 1
        tasks = self._ctx.Queue()
        proc = self._ctx.Process(target=_worker_loop, args=(tasks, self._results, wid), daemon=True)
        proc.start()
        self._procs[wid] = (proc, tasks)
        return wid

    def _kill(self, wid: int) -> None:
        proc, _ = self._procs.pop(wid)
        if proc.is_alive():
            proc.kill()
        proc.join(timeout=5)

    def __call__(self, f: Callable, X: Sequence) -> list:
        while len(self._procs) < self.workers:
            self._spawn()
        pending = list(range(len(X)))
        running: dict[int, tuple[int, float]] = {}  # worker -> (task index, start time)
        out: list = [None] * len(X)
        done = 0
        while done < len(X):
            for wid in list(self._procs):
                if wid not in running and pending:
                    index = pending.pop(0)
                    try:  # a task that cannot be sent fails here, not silently in the queue's thread
                        task = pickle.dumps((index, f, X[index]))
                    except Exception as exc:
                        out[index] = f.failure(X[index], f"cannot send the candidate to a worker: {exc}")
                        done += 1
                        continue
                    self._procs[wid][1].put(task)
                    running[wid] = (index, time.monotonic())
            try:
                wid, index, ok, value = self._results.get(timeout=0.05)
                if running.get(wid, (None,))[0] == index:
                    del running[wid]
                    out[index] = pickle.loads(value) if ok else f.failure(X[index], value)
                    done += 1
            except queue.Empty:
                pass
            now = time.monotonic()
            for wid, (index, started) in list(running.items()):
                proc = self._procs[wid][0]
                reason = None
                if not proc.is_alive():
                    reason = f"worker process died (exit code {proc.exitcode}) while evaluating this candidate"
                elif self.timeout is not None and now - started > self.timeout:
                    reason = f"evaluation timed out after {self.timeout:g} s"
                if reason:
                    del running[wid]
                    self._kill(wid)
                    self._spawn()
                    out[index] = f.failure(X[index], reason)
                    done += 1
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

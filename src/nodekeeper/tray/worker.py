"""Blocking work off the Tk thread: HTTP to the keeper, reading the error index, the
settings checks that touch the disk or resolve a name.

Tk is not thread-safe: only the Tk thread may touch widgets. So a job runs on a worker
thread and its result comes back through a queue that the Tk thread drains every
``PUMP_MS`` with ``after``; the job's callback then runs on the Tk thread. Callbacks of
the tray icon (pystray's thread) and of the single-instance listener use the same queue
through :meth:`Worker.call_soon`.

Every job has its own deadline (the keeper client's timeout); the window never waits for
one: it shows "checking..." and stays responsive. Two threads, so that a slow action (a
restart waiting for the node) does not hold up the status poll behind it.
"""

from __future__ import annotations

import queue
import threading
import tkinter as tk
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
PUMP_MS = 50
THREADS = 2


@dataclass(frozen=True)
class Done(Generic[T]):
    value: T | None = None
    error: BaseException | None = None


class Worker:
    def __init__(self, root: tk.Misc, threads: int = THREADS) -> None:
        self.root = root
        self._jobs: queue.Queue[tuple[Callable[[], Any], Callable[[Done[Any]], None]] | None] = (
            queue.Queue()
        )
        self._results: queue.Queue[Callable[[], None]] = queue.Queue()
        self._threads = [
            threading.Thread(target=self._run, name=f"tray worker {i}", daemon=True)
            for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()
        self._pump_id: str | None = root.after(PUMP_MS, self._pump)

    def submit(self, job: Callable[[], T], done: Callable[[Done[T]], None]) -> None:
        """Run ``job`` on a worker thread, then ``done`` with its result on the Tk thread."""
        self._jobs.put((job, done))

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the Tk thread (safe from any thread)."""
        self._results.put(fn)

    def _run(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            job, done = item
            try:
                result: Done[Any] = Done(value=job())
            except Exception as exc:  # the callback shows it; the worker goes on
                result = Done(error=exc)
            self._results.put(lambda d=done, r=result: d(r))

    def _pump(self) -> None:
        try:
            while True:
                fn = self._results.get_nowait()
                fn()
        except queue.Empty:
            pass
        finally:
            self._pump_id = self.root.after(PUMP_MS, self._pump)

    def close(self) -> None:
        if self._pump_id is not None:
            self.root.after_cancel(self._pump_id)
            self._pump_id = None
        for _ in self._threads:
            self._jobs.put(None)

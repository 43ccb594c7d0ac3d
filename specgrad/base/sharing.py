"""Elementwise work shared between the calling thread and helper threads, for optimizer updates over many
chunks (numpy releases the GIL in its loops, so two threads update two chunks at once).

The caller works too, and every thread claims one chunk at a time: on a busy machine, where the OS may not
run a helper for milliseconds, the caller goes on through the chunks alone and waits only for a chunk that
a helper has already started, never for a helper to wake up. (A fixed split into one part per thread would
wait for the slowest thread's whole part: the stall that two BLAS threads suffer on a shared machine.)
Which thread updates a chunk never changes its bits: the same operations run on the same elements.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from queue import SimpleQueue
from typing import Any


class Sharing:
    """``helpers`` threads waiting for work; ``run(fn, items)`` calls fn on every item, here and on them."""

    def __init__(self, helpers: int):
        self.tasks: SimpleQueue = SimpleQueue()
        self.threads = [
            threading.Thread(target=self._serve, daemon=True, name=f"specgrad-helper-{i}") for i in range(helpers)
        ]
        for thread in self.threads:
            thread.start()

    def _serve(self) -> None:
        while (task := self.tasks.get()) is not None:
            task()

    def close(self) -> None:
        for _ in self.threads:
            self.tasks.put(None)
        for thread in self.threads:
            thread.join()

    def run(self, fn: Callable, items: Sequence) -> None:
        claim = iter(range(len(items)))
        lock = threading.Lock()
        idle = threading.Condition(lock)
        state: dict[str, Any] = {"busy": 0, "error": None}

        def work() -> None:
            while True:
                with lock:
                    i = next(claim, None)
                    if i is None:
                        return
                    state["busy"] += 1
                try:
                    fn(items[i])
                except BaseException as e:  # re-raised by the caller
                    state["error"] = state["error"] or e
                finally:
                    with lock:
                        state["busy"] -= 1
                        if not state["busy"]:
                            idle.notify_all()

        for _ in self.threads:
            self.tasks.put(work)  # a helper that starts late finds nothing left to claim and returns
        work()
        with lock:
            while state["busy"]:
                idle.wait()
        if state["error"] is not None:
            raise state["error"]

"""Work shared between the caller and helper threads (specgrad/base/sharing.py): every item exactly once,
the caller never waits for a helper that has not started, errors reach the caller."""

import threading
import time

import pytest

from specgrad.base.sharing import Sharing


def test_every_item_is_done_exactly_once():
    sharing = Sharing(2)
    try:
        for n in (1, 2, 7, 100):
            done, lock = [], threading.Lock()

            def record(item, done=done, lock=lock):
                with lock:
                    done.append(item)

            sharing.run(record, list(range(n)))
            assert sorted(done) == list(range(n))
    finally:
        sharing.close()


def test_the_caller_does_the_work_when_a_helper_is_held_up():
    sharing = Sharing(1)
    blocker = threading.Event()
    sharing.tasks.put(blocker.wait)  # the helper is busy elsewhere (as if descheduled)
    try:
        seen = []
        t0 = time.perf_counter()
        sharing.run(lambda item: seen.append((item, threading.current_thread())), list(range(10)))
        assert time.perf_counter() - t0 < 1.0
        assert sorted(i for i, _ in seen) == list(range(10))
        assert {thread for _, thread in seen} == {threading.current_thread()}
    finally:
        blocker.set()
        sharing.close()


def test_an_error_in_any_thread_reaches_the_caller():
    sharing = Sharing(2)
    try:

        def fail_on_three(item):
            if item == 3:
                raise ValueError("three")

        with pytest.raises(ValueError, match="three"):
            sharing.run(fail_on_three, list(range(8)))
    finally:
        sharing.close()

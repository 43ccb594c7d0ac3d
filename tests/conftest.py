"""Fixtures shared by the test modules, and the few plain constants and helpers they import (paths;
``run_cli``, which runs the command as a user would: a function of its arguments, no setup to share; and
``tiered``, which splits a long parametrized sweep between the test tiers)."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"


def run_cli(*args, cwd=None, timeout=120):
    """Run the specgrad command exactly as a user would (same interpreter as the tests)."""
    return subprocess.run(
        [sys.executable, "-m", "specgrad.cli", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def tiered(values, group=lambda value: None, ids=None):
    """``parametrize`` values for a sweep of cases: the first case of each group (``group(value)``) runs in
    the fast tier, every other one is marked ``slow``. ``pytest -m "not slow"`` so tries each kind of case
    once; the README's command runs them all. A tuple value fills several argument names."""
    seen, params = set(), []
    for i, value in enumerate(values):
        key = group(value)
        marks = [pytest.mark.slow] if key in seen else []
        seen.add(key)
        args = value if isinstance(value, tuple) else (value,)
        params.append(pytest.param(*args, marks=marks, id=None if ids is None else ids[i]))
    return params


@pytest.fixture
def reference():
    """The article's hand-written loops, the independent oracle: benchmarks/baselines.py, an unchanged copy of
    the project's reference benchmark kept in the repository so the oracle tests never skip."""
    spec = importlib.util.spec_from_file_location("baselines", ROOT / "benchmarks" / "baselines.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def no_fsync(monkeypatch):
    """fsync guards against power loss, which the fault tests do not simulate (a SIGKILLed process's writes
    are in the page cache all the same); without it the many checkpoint writes cost seconds of I/O wait."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)


@pytest.fixture(scope="session")
def uninterrupted(tmp_path_factory):
    """The final state of a faults.RICH run that nothing interrupted: what every resumed run must equal.
    Computed once for the session (it is only read)."""
    from faults import POLY, RICH, run_state

    import specgrad as sg

    run_dir = tmp_path_factory.mktemp("uninterrupted")
    sg.train(sg.load(POLY, RICH), run_dir)
    return run_state(run_dir)

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
    return subprocess.run([sys.executable, "-m", "specgrad.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.fixture
def reference():
    """The article's hand-written loops, the independent oracle: benchmarks/baselines.py, an unchanged copy of
    the project's reference benchmark kept in the repository so the oracle tests never skip."""
    spec = importlib.util.spec_from_file_location("baselines", ROOT / "benchmarks" / "baselines.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

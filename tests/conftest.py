import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
BENCH = ROOT.parent / "shared" / "bench"


def run_cli(*args, cwd=None, timeout=120):
    """Run the specgrad command exactly as a user would (same interpreter as the tests)."""
    return subprocess.run([sys.executable, "-m", "specgrad.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.fixture
def reference():
    """../shared/bench/reference.py: the article's hand-written loops (the independent oracle)."""
    if not (BENCH / "reference.py").exists():
        pytest.skip("../shared/bench/reference.py is not present")
    sys.path.insert(0, str(BENCH))
    try:
        import reference as ref
        yield ref
    finally:
        sys.path.remove(str(BENCH))

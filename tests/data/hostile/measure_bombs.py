"""Wall time and peak memory of `specgrad validate` on the bombs of tests/test_hostile.py, for the table in
docs/reliability.md. Run from the repository root: python tests/data/hostile/measure_bombs.py"""

from __future__ import annotations

import importlib.util
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
BOMBS = [
    "string_doubling_40",
    "list_doubling",
    "mapping_doubling",
    "nested_reference_lists",
    "extends_doubling_30",
    "alias_billion_laughs",
    "merge_key_bomb",
    "flow_list_9mb",
    "many_keys",
    "long_string_9mb",
    "long_line_9mb",
    "formula_9mb",
    "deep_flow_lists",
]
DEEP = ["reference_chain_330", "include_chain_60", "formula_480_terms", "formula_5000_minus", "set_path_490_parts"]


def main() -> None:
    sys.path.insert(0, str(REPO))
    spec = importlib.util.spec_from_file_location("test_hostile", REPO / "tests" / "test_hostile.py")
    generators = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generators)
    print("| input | size | wall | peak RSS | exit | first line |\n|---|---|---|---|---|---|")
    for kind, name in [("bomb", n) for n in BOMBS] + [("deep", n) for n in DEEP]:
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder)
            extra = (generators.make_bomb(root, name) if kind == "bomb" else generators.make_deep(root, name)) or []
            size = sum(p.stat().st_size for p in root.iterdir())
            start = time.perf_counter()
            done = subprocess.run(
                ["/usr/bin/time", "-f", "%M", sys.executable, "-m", "specgrad.cli", "validate", "spec.yaml", *extra],
                cwd=root,
                capture_output=True,
                timeout=60,
                env={**os.environ, "PYTHONPATH": str(REPO)},
                preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (3 << 30, resource.RLIM_INFINITY)),
                check=False,
            )
            seconds = time.perf_counter() - start
            err = done.stderr.decode(errors="replace").strip().splitlines()
            lines = [line for line in done.stdout.decode(errors="replace").splitlines() + err[:-1] if line.strip()]
            print(
                f"| {name} | {size / 1024:.0f} KB | {seconds:.2f} s | {int(err[-1]) // 1024} MB | {done.returncode} "
                f"| {lines[0][:100] if lines else ''} |",
                flush=True,
            )


if __name__ == "__main__":
    main()

"""The repository stands on its own and tools leave it as they found it: docs link only inside it, the
benchmark writes its results file only when asked, and every third-party package imported is declared."""

import ast
import importlib.util
import re
import sys

import pytest
from conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_do_not_point_outside_the_repository(doc):
    text = doc.read_text()
    outside = [
        m
        for m in re.findall(r"(?:\]\(|`)((?:\.\./)+[^)`\s]*)", text)
        if not (doc.parent / m).resolve().is_relative_to(ROOT)
    ]
    assert outside == [] and "../shared" not in text


def _benchmark_module():
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "benchmarks" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_appends_results_only_when_asked(tmp_path, monkeypatch, capsys):
    run = _benchmark_module()
    fake = {"steps_per_s": 1.0, "peak_mb": 0.0, "whole_run_steps_per_s": 1.0}
    monkeypatch.setattr(run, "run_task", lambda *a: {"numpy": fake, "specgrad": fake, "ratios": {}})
    monkeypatch.setattr(run, "process_seconds", lambda *a: {"wall": 0.0, "cpu": 0.0})
    monkeypatch.setattr(run, "heavy_imports", lambda *a: [])
    monkeypatch.setattr(run, "blas", lambda: [])
    monkeypatch.setattr(run, "commit", lambda: "test")
    results = tmp_path / "results.jsonl"
    default = ROOT / "benchmarks" / "results.jsonl"
    before = default.read_bytes()

    run.main(["--tasks", "poly", "--no-torch", "--repeat", "1"])
    run.main(["--tasks", "poly", "--no-torch", "--repeat", "1", "--results", str(results)])
    assert default.read_bytes() == before and not results.exists()
    assert "add --record" in capsys.readouterr().out

    run.main(["--tasks", "poly", "--no-torch", "--repeat", "1", "--results", str(results), "--record"])
    assert len(results.read_text().splitlines()) == 1 and default.read_bytes() == before


def _declared_dependencies() -> set[str]:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = project["dependencies"] + [d for extra in project["optional-dependencies"].values() for d in extra]
    return {re.split(r"[<>=\[; ]", d, maxsplit=1)[0].lower().replace("-", "_") for d in names}


IMPORT_NAMES = {"sklearn": "scikit_learn", "yaml": "pyyaml"}


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is Python 3.11+")
def test_every_third_party_import_of_the_package_is_declared():
    imported = set()
    for path in (ROOT / "specgrad").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    stdlib = set(sys.stdlib_module_names) | {"specgrad"}
    third_party = {IMPORT_NAMES.get(name, name).lower() for name in imported - stdlib}
    assert sorted(third_party - _declared_dependencies()) == []

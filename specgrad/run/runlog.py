"""The run directory's files (contract): spec.yaml, metrics.jsonl, summary.json."""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path

from specgrad.base.fileio import WriteError, json_text, open_regular, parse_json, write_atomic, write_error
from specgrad.spec.render import spec_yaml


def spec_hash(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def spec_diff(old: dict, new: dict) -> list[str]:
    """Lines ``key.path: old -> new`` for every value that differs between two resolved specs."""
    a, b = _flatten(old), _flatten(new)
    missing = object()
    return [
        f"{key}: {_show(a.get(key, missing))} -> {_show(b.get(key, missing))}"
        for key in sorted(a.keys() | b.keys())
        if a.get(key, missing) != b.get(key, missing)
    ]


def _flatten(value, prefix: str = "") -> dict:
    if isinstance(value, dict) and value:
        out = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def _show(value) -> str:
    return "(absent)" if not isinstance(value, (dict, list, str, int, float, bool, type(None))) else json.dumps(value)


def write_spec(run_dir: Path, data: dict, version: str) -> None:
    header = (
        f"# resolved spec, written by specgrad {version}; train it again with: specgrad train {run_dir / 'spec.yaml'}\n"
    )
    write_atomic(run_dir / "spec.yaml", header + spec_yaml(data))


def write_summary(run_dir: Path, summary: dict) -> None:
    write_atomic(run_dir / "summary.json", json_text(summary, indent=2) + "\n")


class MetricsLog:
    """Appends one JSON object per logged step; on resume, drops the lines past the checkpoint's step so the
    log reads exactly as if the run had never stopped. A failed write (a full disk) is a WriteError naming
    the file."""

    def __init__(self, path: Path, resume_step: int | None = None):
        self.path = path
        if resume_step is not None and path.exists():
            kept = [line for line, record in metrics_lines(path) if record["step"] <= resume_step]
            write_atomic(path, "".join(line + "\n" for line in kept))
        with self._named():
            if resume_step is None and path.exists():
                path.unlink()
            self.file = open(path, "a", encoding="utf-8")

    failed = False  # a write failed and was reported: closing does not report it again

    def _named(self):
        return _errors_named(self.path, self)

    def write(self, record: dict) -> None:
        with self._named():
            self.file.write(json_text(record) + "\n")

    def parameters(self, step: int, params: dict) -> None:
        """The parameters at a checkpoint: kept by the checkpoint itself, not by metrics.jsonl (TensorBoard's
        log draws them as histograms)."""

    def flush(self) -> None:
        with self._named():
            self.file.flush()
            os.fsync(self.file.fileno())

    def close(self) -> None:
        if self.failed:
            try:
                self.file.close()
            except OSError:
                pass  # what a failed write left in the buffer: that failure was reported
            return
        with self._named():
            self.file.close()


@contextmanager
def _errors_named(path: Path, log: MetricsLog):
    try:
        yield
    except OSError as exc:
        log.failed = True
        raise (exc if isinstance(exc, WriteError) else write_error(path, exc)) from None


def metrics_lines(path: Path) -> list[tuple[str, dict]]:
    """Each line of a metrics.jsonl with its record; a torn or damaged line (a killed run) is skipped."""
    out = []
    # a regular file only: a run directory may come from elsewhere (a link to /dev/zero would never end)
    with open(open_regular(Path(path)), encoding="utf-8", errors="replace") as f:
        text = f.read()
    for line in text.splitlines():
        try:
            record = parse_json(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            out.append((line, record))
    return out

"""The reliability proof (docs/reliability.md): faults injected into real training processes, damaged
checkpoints, signals, non-finite values, failing disks and hostile input. Every test asserts that its
fault really happened (a signal death, an exit code, a raised error), so a fault that silently does not
occur fails the test."""

import ast
import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, tiered
from faults import (
    CHECKPOINT_STAGES,
    POLY,
    RICH,
    assert_same_run,
    hooks_in_every_run,
    in_child,
    killed_run,
    poison,
    resume,
    run_state,
    scripted_validation,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import specgrad as sg
from specgrad.cli import app
from specgrad.optim.clip import clip, global_norm, param_norms
from specgrad.run import checkpoint as ckpt_module
from specgrad.run.checkpoint import CheckpointError, latest_checkpoint, list_checkpoints, load_checkpoint, param_key
from specgrad.run.trainer import Diverged, Hooks, Trainer
from specgrad.spec import SpecError, load_spec
from specgrad.spec.settings import Clip

# RICH: 40 steps, 120 micro-batches, 18 checkpoint saves (every 4 steps and on 8 new bests between). A kill
# point past the last save would not fire, and killed_run would fail the test.
SAVES = 18


pytestmark = pytest.mark.usefixtures("no_fsync")


# ---------------------------------------------------------------------------- 1. twenty seeded SIGKILLs


def twenty_kill_points():
    """9 kills at random micro-batches and one at each of the 11 points inside a checkpoint write (at a
    random save), all drawn from a fixed seed."""
    rng = random.Random(20261128)
    batches = [("batch", rng.randrange(13, 121)) for _ in range(9)]
    stages = [(stage, rng.randrange(2, SAVES + 1)) for stage in CHECKPOINT_STAGES]
    return batches + stages


@pytest.mark.parametrize("kind, where", tiered(twenty_kill_points(), group=lambda point: point[0] == "batch"))
def test_sigkilled_cli_process_resumes_bitwise_equal(tmp_path, uninterrupted, kind, where):
    """The child runs the `specgrad train` command itself and is SIGKILLed at an exact point."""
    if kind == "batch":
        killed_run(POLY, RICH, tmp_path, batch=where, cli=True)
    else:
        killed_run(POLY, RICH, tmp_path, stage=kind, save=where, cli=True)
    assert_same_run(resume(tmp_path), uninterrupted)


LONG = [
    "train.steps=6000",
    "train.batch_size=50",
    "optimizer={type: adam, lr: 0.01}",
    "schedule=cosine",
    "train.checkpoint={every: 500, keep_last: 3}",
    "train.log_every=50",
]


@pytest.fixture(scope="module")
def long_reference(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("long")
    Trainer(load_spec(POLY, LONG), run_dir).run()
    return run_state(run_dir)


def start_cli(run_dir, *extra):
    args = [a for o in LONG for a in ("--set", o)]
    return subprocess.Popen(
        [sys.executable, "-m", "specgrad.cli", "train", str(POLY), *args, "--run-dir", str(run_dir), "--quiet", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_checkpoint(proc, run_dir, timeout=60):
    deadline = time.monotonic() + timeout
    while not (run_dir / "checkpoints" / "latest").exists():
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.002)


def resume_cli(run_dir):
    args = [a for o in LONG for a in ("--set", o)]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "specgrad.cli",
            "train",
            str(POLY),
            *args,
            "--run-dir",
            str(run_dir),
            "--resume",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return run_state(run_dir)


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.05])
def test_external_sigkill_of_the_cli_at_an_unplanned_moment(tmp_path, long_reference, delay):
    proc = start_cli(tmp_path)
    wait_for_checkpoint(proc, tmp_path)
    time.sleep(delay)
    proc.kill()
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert latest_checkpoint(tmp_path / "checkpoints").step < 6000
    assert_same_run(resume_cli(tmp_path), long_reference)


# ---------------------------------------------------------------------------- 2. kill during a checkpoint write


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("stage", tiered(CHECKPOINT_STAGES))
def test_kill_during_a_checkpoint_write_leaves_earlier_ones_byte_identical(tmp_path, stage):
    save = 6
    killed_run(POLY, RICH, tmp_path / "before", stage="arrays.npz", save=save)  # dies before save 6 writes
    killed_run(POLY, RICH, tmp_path / "during", stage=stage, save=save)
    before = {p.name: snapshot(p) for p in list_checkpoints(tmp_path / "before" / "checkpoints")}
    during = {p.name: snapshot(p) for p in list_checkpoints(tmp_path / "during" / "checkpoints")}
    pruned = {name for name in before if name not in during}
    assert len(pruned) <= (1 if stage == "prune:half-deleted" else 0)  # only pruning deletes, after...
    for name in before.keys() - pruned:
        assert during[name] == before[name], name  # ...and nothing else changes
    for _name in during.keys() - before.keys():  # a new one under a final name
        assert stage in ("latest", "latest:torn", "prune", "prune:half-deleted")  # is complete
    for path in list_checkpoints(tmp_path / "during" / "checkpoints"):
        load_checkpoint(path)  # every one under a final name loads
    for entry in (tmp_path / "during" / "checkpoints").iterdir():
        assert entry.name.startswith(("step-", ".tmp-step-", ".old-step-", ".latest-")) or entry.name == "latest"
    assert latest_checkpoint(tmp_path / "during" / "checkpoints") is not None


# ---------------------------------------------------------------------------- 3. damaged checkpoints


def flip(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("damage", [flip, truncate, Path.unlink], ids=["flip", "truncate", "delete"])
@pytest.mark.parametrize("fname", tiered(["arrays.npz", "state.json", "manifest.json"]))
def test_damaged_latest_is_named_and_resume_falls_back(tmp_path, uninterrupted, damage, fname):
    killed_run(POLY, RICH, tmp_path, batch=90)
    root = tmp_path / "checkpoints"
    latest, previous = list_checkpoints(root)[-1], list_checkpoints(root)[-2]
    damage(latest / fname)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(latest)
    # named: the folder, and the damaged file (a damaged manifest may instead show as a sum that no longer
    # matches the file it describes)
    named = fname if fname != "manifest.json" else ("manifest.json", "arrays.npz", "state.json")
    assert str(latest) in str(err.value) and any(n in str(err.value) for n in np.atleast_1d(named))
    warnings = []
    Trainer(load_spec(POLY, RICH), tmp_path, Hooks(on_warning=warnings.append)).run(resume=True)
    assert any(str(latest) in w and f"falling back to {previous}" in w for w in warnings), warnings
    assert_same_run(run_state(tmp_path), uninterrupted)


def test_cli_reports_the_damaged_file_and_never_restarts_from_zero(tmp_path):
    killed_run(POLY, RICH, tmp_path, batch=90)
    for path in list_checkpoints(tmp_path / "checkpoints"):
        flip(path / "arrays.npz")
    args = [a for o in RICH for a in ("--set", o)]
    result = CliRunner().invoke(app, ["train", str(POLY), *args, "--run-dir", str(tmp_path), "--resume"])
    assert result.exit_code == 1
    assert "no loadable checkpoint" in result.output and "arrays.npz: sha256 mismatch" in result.output
    assert not (tmp_path / "summary.json").exists()


# ---------------------------------------------------------------------------- 4. SIGTERM and SIGINT


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_checkpoints_at_the_next_step_and_resume_matches(tmp_path, long_reference, sig, code):
    proc = start_cli(tmp_path)
    wait_for_checkpoint(proc, tmp_path)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["signal"] == sig and summary["steps"] < 6000
    assert latest_checkpoint(tmp_path / "checkpoints").step == summary["steps"]  # saved at the boundary
    assert_same_run(resume_cli(tmp_path), long_reference)


def test_a_second_sigint_exits_at_once_without_saving(tmp_path):
    def twice_at_step_10():
        def on_step(step, loss):
            if step == 10:
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGINT)

        hooks_in_every_run(on_step=on_step)  # in the forked child only
        app(
            [
                "train",
                str(POLY),
                "--set",
                "train.steps=100",
                "--set",
                "train.checkpoint={every: 4}",
                "--run-dir",
                str(tmp_path),
                "--quiet",
            ]
        )

    status = in_child(twice_at_step_10)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 130
    assert latest_checkpoint(tmp_path / "checkpoints").step == 8  # nothing saved at step 10
    assert not (tmp_path / "summary.json").exists()


# ---------------------------------------------------------------------------- 5. retention with NaN and ties


@pytest.mark.parametrize(
    "values, keep, expected, best",
    [
        ([float("nan")] * 5, "{every: 2, keep_last: 1, keep_best: 1}", [10], None),
        ([float("nan"), 0.5, float("nan"), 0.5, 0.5], "{every: 2, keep_last: 1, keep_best: 1}", [4, 10], 4),
        ([0.5, 0.5, 0.5, 0.5, 0.5], "{every: 2, keep_last: 2, keep_best: 2}", [2, 4, 8, 10], 2),
        ([0.4, float("nan"), 0.3, 0.3, float("inf")], "{every: 2, keep_last: 1, keep_best: 1}", [6, 10], 6),
    ],
)
def test_retention_keeps_exactly_the_expected_checkpoints(tmp_path, values, keep, expected, best):
    summary = sg.train(
        sg.load(
            POLY, ["data.split={val: 0.2}", "train.steps=10", "train.validation={every: 2}", f"train.checkpoint={keep}"]
        ),
        tmp_path,
        validate=scripted_validation(values),
    ).summary
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == [f"step-{s:08d}" for s in expected]
    assert (summary["best"] or {}).get("step") == best


# ---------------------------------------------------------------------------- 6. NaN / Inf under each policy


@pytest.mark.parametrize("where", ["loss", "grad"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("policy", ["stop", "skip", "fail"])
def test_non_finite_values_follow_the_policy(tmp_path, where, value, policy):
    trainer = Trainer(
        load_spec(POLY, ["train.steps=20", "train.checkpoint={every: 5}", f"train.on_divergence={policy}"]),
        tmp_path,
        Hooks(on_gradients=poison(8, where, value)),
    )
    if policy == "fail":
        with pytest.raises(Diverged, match="non-finite loss or gradient at step 8"):
            trainer.run()
        assert [load_checkpoint(p).step for p in list_checkpoints(tmp_path / "checkpoints")] == [5]
        return
    summary = trainer.run()
    if policy == "stop":
        assert summary["status"] == "diverged" and summary["steps"] == 7
    else:
        assert summary["status"] == "completed" and summary["skipped_steps"] == 1
    for path in list_checkpoints(tmp_path / "checkpoints"):
        assert np.isfinite(load_checkpoint(path).arrays[param_key("k")]).all()
    assert np.isfinite(trainer.params["k"]).all()


# ---------------------------------------------------------------------------- 7. clipping properties

arrays = st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=64), min_size=1, max_size=8).map(np.array)
grad_dicts = st.dictionaries(st.sampled_from(["a", "b", "c"]), arrays, min_size=1)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(grad_dicts, st.floats(1e-3, 1e3))
def test_clipping_bounds_the_norm_keeps_the_direction_and_spares_small_gradients(grads, bound):
    before = {k: v.copy() for k, v in grads.items()}
    norm = global_norm(before)
    clip(grads, Clip(max_norm=bound), param_norms(grads))
    if bound / (norm + 1e-6) >= 1:  # torch's clip_coef, clamped to 1: nothing to cut
        assert all(grads[k].tobytes() == before[k].tobytes() for k in grads)
    else:
        assert global_norm(grads) <= bound * (1 + 1e-12)
        for k in grads:  # the same direction: a positive multiple
            np.testing.assert_allclose(grads[k], before[k] * (bound / (norm + 1e-6)), rtol=1e-12, atol=1e-300)


@settings(max_examples=200, deadline=None)
@given(grad_dicts, st.floats(1e-3, 1e3), st.floats(1e-3, 1e3))
def test_per_parameter_and_value_clipping_bounds(grads, max_param_norm, max_value):
    before = {k: v.copy() for k, v in grads.items()}
    clip(grads, Clip(max_value=max_value, max_param_norm=max_param_norm), param_norms(grads))
    for k, g in grads.items():
        assert np.abs(g).max() <= max_value
        assert np.sqrt(np.vdot(g, g)) <= max_param_norm * (1 + 1e-12)
        untouched = (
            np.abs(before[k]).max() <= max_value
            and max_param_norm / (np.sqrt(np.vdot(before[k], before[k])) + 1e-6) >= 1
        )  # torch's rule
        if untouched:
            assert g.tobytes() == before[k].tobytes()


# ---------------------------------------------------------------------------- 8. security

FORBIDDEN_CALLS = {
    ("yaml", "load"),
    ("yaml", "unsafe_load"),
    ("yaml", "full_load"),
    ("pickle", "load"),
    ("pickle", "loads"),
    ("marshal", "loads"),
}
FORBIDDEN_MODULES = {"pickle", "marshal", "shelve", "dill", "cloudpickle"}


def offences(source: str, filename: str = "<source>") -> list[str]:
    """Unsafe deserialisation or code execution in Python source: pickle-like imports, yaml.load and
    friends, eval/exec/compile, and allow_pickle= anything but False."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{where}: imports {n}" for n in names if n and n.split(".")[0] in FORBIDDEN_MODULES]
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name) and f.id in ("eval", "exec", "compile", "__import__"):
                found.append(f"{where}: calls {f.id}")
            if (
                isinstance(f, ast.Attribute)
                and isinstance(f.value, ast.Name)
                and (f.value.id, f.attr) in FORBIDDEN_CALLS
            ):
                found.append(f"{where}: calls {f.value.id}.{f.attr}")
            for kw in node.keywords:
                if kw.arg == "allow_pickle" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    found.append(f"{where}: allow_pickle={ast.unparse(kw.value)}")
    return found


def test_no_pickle_yaml_load_eval_exec_or_allow_pickle_in_specgrad():
    files = sorted((ROOT / "specgrad").rglob("*.py"))
    assert len(files) > 20
    assert [o for path in files for o in offences(path.read_text(), str(path.relative_to(ROOT)))] == []


def test_the_ast_check_catches_each_offence():
    """The check above is only worth its silence if it would speak."""
    bad = (
        "import pickle\nfrom marshal import loads\nimport yaml\nyaml.load(s)\neval('1')\nexec('x')\n"
        "np.load(f, allow_pickle=True)\nnp.load(f, allow_pickle=flag)\n"
    )
    assert len(offences(bad)) == 7  # every line but "import yaml"
    assert offences("yaml.safe_load(s)\nnp.load(f, allow_pickle=False)\nmodel.eval()\n") == []


@pytest.mark.parametrize(
    "tag",
    [
        "!!python/object/apply:os.system ['true']",
        "!!python/object:os.system {}",
        "!!python/name:os.system",
        "!!python/module:os",
    ],
)
def test_python_yaml_tags_are_rejected(tmp_path, tag):
    spec = tmp_path / "evil.yaml"
    spec.write_text(POLY.read_text().replace("name: poly", f"name: {tag}"))
    with pytest.raises(SpecError, match="not allowed"):
        load_spec(spec)


def test_npz_with_object_arrays_is_rejected(tmp_path):
    import hashlib

    from specgrad.run.checkpoint import save_checkpoint

    folder = save_checkpoint(tmp_path, 1, {"w": np.ones(2)}, {"step": 1})
    with zipfile.ZipFile(folder / "arrays.npz", "w") as zf:
        with zf.open("w.npy", "w") as f:
            np.lib.format.write_array(f, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"]["arrays.npz"] = hashlib.sha256((folder / "arrays.npz").read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="object array"):
        load_checkpoint(folder)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["arrays.npz", "state.json", "manifest.json"]), st.binary(max_size=600), st.booleans())
@pytest.mark.slow
def test_random_bytes_to_the_loader_raise_only_checkpoint_error(tmp_path_factory, fname, data, rehash):
    import hashlib

    from specgrad.run.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("fuzz")
    folder = save_checkpoint(root, 1, {"w": np.ones(2)}, {"step": 1})
    (folder / fname).write_bytes(data)
    if rehash and fname != "manifest.json":  # so the parser itself sees the bytes, not just the sha256
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["files"][fname] = hashlib.sha256(data).hexdigest()
        (folder / "manifest.json").write_text(json.dumps(manifest))
    try:
        loaded = load_checkpoint(folder)
    except CheckpointError:
        return
    # the only way through is bytes that are a valid file of that kind: for state.json, a JSON object
    # (hypothesis finds b'{}'), which must then be exactly what was loaded
    assert rehash and fname == "state.json", f"{fname}: {data!r} loaded"
    assert loaded.state == json.loads(data)


# ---------------------------------------------------------------------------- 9. full disk, read-only run dir


def fail_at(monkeypatch, where, err):
    """Make the next checkpoint save of this process fail as a full or read-only disk would: writing the
    arrays (ENOSPC, EACCES) or creating the checkpoint's folder (EROFS)."""

    def fail(path, *args, **kwargs):
        raise OSError(err, os.strerror(err), str(path))

    if where == "arrays.npz":
        monkeypatch.setattr(ckpt_module, "write_npz", fail)
    else:
        real_mkdir = os.mkdir
        monkeypatch.setattr(
            os, "mkdir", lambda path, *a, **k: fail(path) if ".tmp-step-" in str(path) else real_mkdir(path, *a, **k)
        )


@pytest.mark.parametrize(
    "where, err, stage",
    [
        ("arrays.npz", errno.ENOSPC, "write arrays.npz"),
        ("arrays.npz", errno.EACCES, "write arrays.npz"),
        ("folder", errno.EROFS, "create folder"),
    ],
)
def test_a_failing_disk_is_a_clear_error_and_earlier_checkpoints_survive(tmp_path, monkeypatch, where, err, stage):
    killed_run(POLY, RICH, tmp_path, batch=60)
    before = {p.name: snapshot(p) for p in list_checkpoints(tmp_path / "checkpoints")}
    fail_at(monkeypatch, where, err)
    args = [a for o in RICH for a in ("--set", o)]
    result = CliRunner().invoke(app, ["train", str(POLY), *args, "--run-dir", str(tmp_path), "--resume"])
    assert result.exit_code == 1, result.output
    assert "error: checkpoint" in result.output and f"cannot {stage}" in result.output
    assert os.strerror(err) in result.output and "Traceback" not in result.output
    after = {p.name: snapshot(p) for p in list_checkpoints(tmp_path / "checkpoints")}
    assert after == before
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".tmp-")]


def test_a_run_dir_that_cannot_be_created_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(app, ["train", str(POLY), "--run-dir", str(blocker / "run")])
    assert result.exit_code == 1 and "error:" in result.output and "Traceback" not in result.output

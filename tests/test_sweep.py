"""Sweep files (located errors, every point checked before anything runs) and `specgrad sweep` (trials as run
directories, resumable after SIGKILL at any moment, nothing counted twice)."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, run_cli

optuna = pytest.importorskip("optuna", reason="sweeps need the specgrad[sweep] extra (optuna)")

from specgrad.run.sweep.file import check_sweep, load_sweep, points, sweep_schema
from specgrad.run.sweep.study import run_dir_of

BASE = """\
specgrad: 1
name: tiny
data: {source: synthetic, function: "sin(3*x)", x: {low: -1, high: 1}, n: 64, noise: 0.05, split: {val: 0.25}}
model:
  inputs: {x: []}
  nodes:
    - phi: powers(x, 3)
    - h: {layer: linear, input: phi, units: 16}
    - r: reshape(h, [-1, 2, 8])
    - s: sum(r, [1, 2])
  output: s
loss: sse
optimizer: {type: sgd, lr: 1.0e-3}
train: {steps: STEPS, checkpoint: {every: 50}, validation: {every: 50}}
"""


def write(tmp_path, sweep: str, steps: int = 100) -> Path:
    (tmp_path / "base.yaml").write_text(BASE.replace("STEPS", str(steps)))
    path = tmp_path / "sweep.yaml"
    path.write_text(sweep)
    return path


def errors(path):
    ok, diags = check_sweep(path)
    return ok, [f"{d.location.line}:{d.location.col}: {d.text}" for d in diags if d.severity == "error"]


def test_schema_file_is_generated_from_the_registries():
    assert json.loads((ROOT / "schemas" / "sweep.schema.json").read_text()) == sweep_schema(), (
        "regenerate with: specgrad schema --sweep > schemas/sweep.schema.json"
    )
    assert json.loads(run_cli("schema", "--sweep").stdout) == sweep_schema()


def test_sweep_schema_offers_exactly_the_registered_samplers_and_pruners():
    from specgrad.run.sweep.options import PRUNERS, SAMPLERS
    from tests.test_schema import named_enums

    assert named_enums(sweep_schema()) == {"sampler": set(SAMPLERS.names()), "pruner": set(PRUNERS.names())}
    for name in SAMPLERS.names():  # each makes the Optuna sampler it names (cmaes and gp may lack a package)
        if name not in ("cmaes", "gp"):
            assert "Sampler" in type(SAMPLERS.create({"type": name}, space={"a": [1, 2]})).__name__
    for name in PRUNERS.names():
        settings = {
            "type": name,
            **({"percentile": 50} if name == "percentile" else {}),
            **({"patience": 2} if name == "patient" else {}),
            **({"lower": 0} if name == "threshold" else {}),
        }
        assert "Pruner" in type(PRUNERS.create(settings)).__name__


def test_every_grid_point_is_checked_and_a_breaking_width_is_named_with_its_place(tmp_path):
    path = write(
        tmp_path,
        """\
sweep: 1
spec: base.yaml
params:
  model.nodes.1.h.units: {choice: [16, 32, 12]}
  optimizer.lr: {choice: [1.0e-3, 1.0e-2]}
objective: {metric: val.loss, mode: min}
sampler: grid
""",
    )
    assert len(points(load_sweep(path))[0]) == 6
    ok, found = errors(path)
    assert not ok
    # only 16 units reshape to [-1, 2, 8] per sample; 12 and 32 are errors at the reshape in the base spec,
    # each saying which value of the sweep made it and where the sweep's params are
    assert len(found) == 2, found
    assert "9:10: node 'r': reshape of [B, 32] to [-1, 2, 8]" in found[0] and "h.units=32" in found[0]
    assert "9:10: node 'r': cannot reshape [B, 12] to [-1, 2, 8]" in found[1] and "h.units=12" in found[1]
    assert all(f"params at {path}:4:3]" in f for f in found)


def test_range_corners_are_checked_at_the_sweep_files_line(tmp_path):
    path = write(
        tmp_path,
        """\
sweep: 1
spec: base.yaml
params:
  optimizer.lr: {float: [1.0e-4, 1.0e-1], log: true}
  optimizer.momentum: {float: [0.0, 1.5]}
objective: {metric: val.loss, mode: min}
""",
    )
    ok, found = errors(path)
    assert not ok
    # the upper corner of momentum, at its place in the sweep file; the lr corners are fine
    assert found == ["5:23: optimizer.momentum must be < 1, got 1.5 [with optimizer.lr=0.0001, optimizer.momentum=1.5]"]


def test_sweep_file_errors_are_located_and_all_reported(tmp_path):
    path = write(
        tmp_path,
        """\
sweep: 1
spec: base.yaml
params:
  optimizer.lr: {float: [1.0e-1, 1.0e-4], log: true}
  optimizer.type: {choice: [sgd, adam], log: true}
  train.steps: {int: [0, 10], log: true}
  model..x: {choice: [1]}
objective: {metric: val.loss, mode: min}
sampler: {type: tpe, n_startup: 3}
pruner: threshold
trials: 0
""",
    )
    ok, found = errors(path)
    assert not ok
    text = "\n".join(found)
    assert "9:22: unknown key 'n_startup' in sampler; did you mean 'n_startup_trials'?" in text
    assert "11:9: trials must be >= 1, got 0" in text
    path.write_text(path.read_text().replace("n_startup", "n_startup_trials").replace("trials: 0", "trials: 5"))
    ok, found = errors(path)
    text = "\n".join(found)
    assert "4:25: the range of 'optimizer.lr' is empty: low 0.1 > high 0.0001" in text
    assert "5:46: 'log' applies to int and float ranges, not to a choice" in text
    assert "6:23: a log scale needs low > 0, got 0" in text
    assert "7:3: 'model..x' is not a spec path" in text
    assert "10:9: the threshold pruner needs a lower or an upper bound" in text


def test_sweeps_too_large_to_check_or_run_are_refused_at_their_place(tmp_path):
    """A grid Optuna would list in memory, more parameters than can be checked in reasonable time, a float
    step cutting its range into more values than floats tell apart: located errors, found quickly."""
    choices = "{choice: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]}"
    params = "".join(f"  vars.v{i}: {choices}\n" for i in range(7))  # 10^7 points
    path = write(
        tmp_path,
        f"sweep: 1\nspec: base.yaml\nparams:\n{params}objective: {{metric: val.loss, mode: min}}\nsampler: grid\n",
    )
    assert errors(path) == (False, ["12:10: a grid of 10000000 points: at most 1000000 (sample it instead)"])
    params = "".join(f"  vars.v{i}: {{int: [0, 1]}}\n" for i in range(65))
    path = write(tmp_path, f"sweep: 1\nspec: base.yaml\nparams:\n{params}objective: {{metric: val.loss, mode: min}}\n")
    assert errors(path) == (False, ["4:3: 65 parameters: at most 64"])
    path = write(
        tmp_path,
        "sweep: 1\nspec: base.yaml\nparams:\n  optimizer.lr: {float: [1.0e-300, 1.0e+308], step: 1.0e-10}\n"
        "objective: {metric: val.loss, mode: min}\n",
    )
    assert errors(path) == (False, ["4:53: a step of 1e-10 cuts the range into more than 9007199254740992 values"])


def test_objective_and_pruner_are_checked_against_the_base_spec(tmp_path):
    path = write(
        tmp_path,
        """\
sweep: 1
spec: base.yaml
params: {optimizer.lr: {float: [1.0e-4, 1.0e-1]}}
objective: {metric: test.accuracy, mode: max}
pruner: median
""",
    )
    ok, found = errors(path)
    text = "\n".join(found)
    assert "4:21: the objective test.accuracy needs a test split" in text
    assert "4:21: the spec does not compute 'accuracy'; the objective can be one of test.loss" in text
    assert "5:9: pruning compares trials on their validation evaluations" in text


def test_validate_command_checks_sweep_files_and_the_examples(tmp_path):
    r = run_cli("validate", ROOT / "models" / "sweeps")
    assert r.returncode == 0, r.stderr + r.stdout
    path = write(
        tmp_path,
        "sweep: 1\nspec: missing.yaml\nparams: {optimizer.lr: {choice: [1]}}\n"
        "objective: {metric: val.loss, mode: min}\n",
    )
    r = run_cli("validate", path)
    assert r.returncode == 1 and f"{path}:2:7: error: no such spec file 'missing.yaml'" in r.stdout
    assert "Traceback" not in r.stderr


GRID = """\
sweep: 1
spec: base.yaml
params:
  optimizer.lr: {choice: [1.0e-3, 3.0e-3]}
  optimizer.type: {choice: [sgd, adam]}
objective: {metric: val.loss, mode: min}
sampler: grid
"""


STEPS_KILLED = 12000


def study_trials(sweep_dir: Path, name="sweep"):
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{sweep_dir / 'study.db'}")
    return study.get_trials()


def test_sweep_runs_each_trial_as_an_ordinary_run_directory(tmp_path):
    path = write(tmp_path, GRID)
    r = run_cli("sweep", path, "--workers", "2", "--dir", tmp_path / "out", cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "4 completed, 0 pruned, 0 failed of 4 trials" in r.stdout
    trials = study_trials(tmp_path / "out")
    assert sorted(tuple(sorted(t.params.items())) for t in trials) == sorted(
        tuple(sorted({"optimizer.lr": lr, "optimizer.type": o}.items())) for lr in (1e-3, 3e-3) for o in ("sgd", "adam")
    )
    for t in trials:
        run = tmp_path / "out" / t.user_attrs["run_dir"]
        spec = yaml.safe_load((run / "spec.yaml").read_text())
        assert spec["optimizer"]["lr"] == t.params["optimizer.lr"]
        assert spec["optimizer"]["type"] == t.params["optimizer.type"]
        summary = json.loads((run / "summary.json").read_text())
        assert summary["status"] == "completed" and summary["val"]["loss"] == t.value
    # an independent run of the trial's resolved spec gives the same bits: the trial is an ordinary run
    t = trials[0]
    run = tmp_path / "out" / t.user_attrs["run_dir"]
    r = run_cli("train", run / "spec.yaml", "--run-dir", tmp_path / "again", "--quiet")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "again" / "summary.json").read_text())["val"]["loss"] == t.value


SEEDED = """\
sweep: 1
spec: base.yaml
params:
  optimizer.lr: {float: [1.0e-4, 1.0e-2], log: true}
  optimizer.type: {choice: [sgd, adam, rmsprop]}
objective: {metric: val.loss, mode: min}
sampler: SAMPLER
trials: 4
seed: SEED
"""


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_the_sweeps_seed_makes_its_trials_and_workers_never_share_a_stream(tmp_path, sampler):
    def proposals(name, seed, workers=1):
        path = write(tmp_path, SEEDED.replace("SAMPLER", sampler).replace("SEED", str(seed)), steps=20)
        out = tmp_path / name
        r = run_cli("sweep", path, "--workers", str(workers), "--dir", out, "--quiet", cwd=tmp_path, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        return [tuple(sorted(t.params.items())) for t in sorted(study_trials(out), key=lambda t: t.number)]

    first = proposals("a", seed=3)
    assert proposals("b", seed=3) == first  # one worker: the same trials, in the same order
    assert proposals("c", seed=4) != first
    # two workers each make their own proposals: none repeats another's (same seed, distinct streams)
    both = proposals("d", seed=3, workers=2)
    assert len(set(both)) == len(both) == 4


@pytest.mark.parametrize("environ,why", [({}, "limit(1)"), ({"OMP_NUM_THREADS": "2"}, "OMP_NUM_THREADS=2")])
def test_workers_take_one_blas_thread_unless_the_user_set_one(tmp_path, monkeypatch, environ, why):
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    for var, value in environ.items():
        monkeypatch.setenv(var, value)
    path = write(tmp_path, GRID.replace("[sgd, adam]", "[sgd]"), steps=20)
    r = run_cli("sweep", path, "--workers", "1", "--dir", tmp_path / "out", "--quiet", cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    for t in study_trials(tmp_path / "out"):
        summary = json.loads((tmp_path / "out" / t.user_attrs["run_dir"] / "summary.json").read_text())
        assert why in summary["threads"]["why"], summary["threads"]


def _sweep_process(path, out, workers=2):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "specgrad.cli",
            "sweep",
            str(path),
            "--workers",
            str(workers),
            "--dir",
            str(out),
            "--quiet",
        ],
        cwd=path.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def _final_records(out: Path):
    """params -> (objective, every logged step of its run) for each completed trial."""
    result = {}
    for t in study_trials(out):
        if t.state == optuna.trial.TrialState.COMPLETE:
            key = tuple(sorted(t.params.items()))
            assert key not in result, f"{key} completed twice"
            steps = [
                json.loads(line)["step"]
                for line in (out / t.user_attrs["run_dir"] / "metrics.jsonl").read_text().splitlines()
            ]
            result[key] = (t.value, steps)
    return result


@pytest.mark.slow
def test_sigkill_at_random_points_then_rerun_loses_and_repeats_nothing(tmp_path):
    # trials long enough that the kills land inside them on a quiet machine too (3000 steps finished first)
    path = write(tmp_path, GRID.replace("[sgd, adam]", "[rmsprop, adam]"), steps=STEPS_KILLED)
    reference = tmp_path / "reference"
    assert _sweep_process(path, reference).wait(timeout=600) == 0
    expected = _final_records(reference)
    assert len(expected) == 4

    out, rng = tmp_path / "killed", random.Random(int(os.environ.get("SWEEP_KILL_SEED", "0")))

    def in_progress():
        return [d for d in out.glob("trial-*") if (d / "checkpoints").is_dir() and not (d / "summary.json").exists()]

    for kill in range(4):
        proc = _sweep_process(path, out)
        # the first kill falls anywhere from the workers' start (imports, opening the study, asking); the
        # others anywhere in the 1.5 s after a trial has checkpointed, so that trials are cut mid-run
        deadline = time.time() + 120
        started = (lambda: (out / "workers.log").exists()) if kill == 0 else (lambda: bool(in_progress()))
        while not started() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.2, 4.0) if kill == 0 else rng.uniform(0.0, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        time.sleep(0.2)  # the workers die with it (PR_SET_PDEATHSIG)
    r = run_cli("sweep", path, "--workers", "2", "--dir", out, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "4 completed, 0 pruned, 0 failed of 4 trials" in r.stdout
    got = _final_records(out)
    # each point completed once, with the bits of the uninterrupted sweep, every step logged exactly once
    assert got.keys() == expected.keys()
    for key, (value, steps) in got.items():
        assert value == expected[key][0], key
        assert steps == list(range(1, STEPS_KILLED + 1)), key
    # the kills did interrupt trials, whose retries resumed the same run directories
    trials = study_trials(out)
    retries = [t for t in trials if t.user_attrs.get("retry_of") is not None]
    # (a trial killed before it recorded its run directory has its own name's: run_dir_of says which)
    assert retries and all(run_dir_of(t) == run_dir_of(trials[t.user_attrs["retry_of"]]) for t in retries)
    # every run directory belongs to exactly one completed trial
    completed = [t.user_attrs["run_dir"] for t in trials if t.state.name == "COMPLETE"]
    assert len(set(completed)) == 4 == len([p for p in out.glob("trial-*") if (p / "summary.json").exists()])


@pytest.mark.slow
def test_pruning_stops_bad_trials_with_a_pruned_run_directory(tmp_path):
    path = write(
        tmp_path,
        """\
sweep: 1
spec: base.yaml
params:
  optimizer.lr: {choice: [3.0e-3, 1.0e-6, 1.0e-7, 1.0e-8]}
objective: {metric: val.loss, mode: min}
sampler: grid
pruner: {type: median, n_startup_trials: 1}
""",
        steps=400,
    )
    r = run_cli("sweep", path, "--workers", "1", "--dir", tmp_path / "out", cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    trials = study_trials(tmp_path / "out")
    pruned = [t for t in trials if t.state.name == "PRUNED"]
    assert pruned, [(t.params, t.state) for t in trials]
    for t in pruned:
        summary = json.loads((tmp_path / "out" / t.user_attrs["run_dir"] / "summary.json").read_text())
        assert summary["status"] == "pruned" and summary["steps"] < 400
        assert summary["steps"] == max(t.intermediate_values)


def test_a_missing_optuna_is_an_error_naming_the_extra(tmp_path):
    path = write(tmp_path, GRID)
    code = (
        "import sys; sys.modules['optuna'] = None\n"
        f"from specgrad.cli import main; sys.argv = ['specgrad', 'sweep', {str(path)!r}]; main()"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert r.returncode == 1
    assert "pip install 'specgrad[sweep]'" in r.stderr and "Traceback" not in r.stderr


def test_sweep_refuses_a_bad_point_before_running_anything(tmp_path):
    path = write(tmp_path, GRID.replace("[1.0e-3, 3.0e-3]", "[1.0e-3, -1.0]"))
    r = run_cli("sweep", path, "--dir", tmp_path / "out", cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"{path}:4:17: error: optimizer.lr must be > 0, got -1.0" in r.stderr
    assert not (tmp_path / "out").exists()  # no study, no trial: nothing ran


def test_a_trial_killed_before_it_named_its_run_directory_is_retried_at_its_grid_point(tmp_path):
    """The narrowest window: asked (RUNNING, its grid point chosen) but killed before recording anything."""
    from specgrad.run.sweep.study import default_storage, repair_owned
    from specgrad.run.sweep.worker import Worker

    path = write(tmp_path, GRID, steps=20)
    out = tmp_path / "out"
    out.mkdir()
    worker = Worker(load_sweep(path), out, default_storage(out), 4)
    orphan = worker.next_trial()  # ... and the worker dies here
    assert repair_owned(worker.study) == 1  # what the next `specgrad sweep` does first
    assert worker.loop() == 4
    trials = worker.study.get_trials()
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    points = sorted(tuple(sorted(t.params.items())) for t in complete)
    assert len(points) == 4 and len(set(points)) == 4  # every grid point once, none twice
    [retry] = [t for t in complete if t.user_attrs.get("retry_of") == orphan.number]
    assert (
        retry.user_attrs["run_dir"] == "trial-0000"
        and retry.system_attrs["grid_id"]
        == next(t for t in trials if t.number == orphan.number).system_attrs["grid_id"]
    )


def test_progress_view_lines_and_live_table(tmp_path):
    from optuna.distributions import FloatDistribution
    from optuna.trial import TrialState, create_trial

    from specgrad.run.sweep.progress import SweepView
    from specgrad.run.sweep.study import tally

    sweep = load_sweep(write(tmp_path, GRID))
    dist = {"optimizer.lr": FloatDistribution(1e-4, 1.0)}
    trials = [
        create_trial(state=TrialState.COMPLETE, value=0.5, params={"optimizer.lr": 0.001}, distributions=dist),
        create_trial(
            state=TrialState.PRUNED, params={"optimizer.lr": 0.003}, distributions=dist, intermediate_values={50: 0.9}
        ),
        create_trial(
            state=TrialState.FAIL,
            params={"optimizer.lr": 0.01},
            distributions=dist,
            user_attrs={"error": "run diverged; val.loss = None"},
        ),
        create_trial(state=TrialState.FAIL, params={"optimizer.lr": 0.01}, distributions=dist),
        create_trial(state=TrialState.RUNNING, params={"optimizer.lr": 0.02}, distributions=dist),
    ]
    for number, t in enumerate(trials):
        t.number = number
    counts = tally(trials, 4)
    assert (counts["done"], counts["pruned"], counts["failed"], counts["running"], counts["slots"]) == (1, 1, 1, 1, 4)
    best = {"number": 0, "value": 0.5}
    lines = []
    view = SweepView(sweep, lines.append, live=False)
    view.update(trials, counts, best)
    view.update(trials, counts, best)  # each trial's end is printed once
    assert [line.split("  |")[0] for line in lines] == [
        "trial 0 completed, val.loss 0.5 (optimizer.lr=0.001)",
        "trial 1 pruned at step 50 (optimizer.lr=0.003)",
        "trial 2 failed: run diverged; val.loss = None (optimizer.lr=0.01)",
        "trial 3 interrupted, to be resumed (optimizer.lr=0.01)",
    ]
    assert lines[0].endswith("3/4 finished (1 completed, 1 pruned, 1 failed), 1 running; best val.loss 0.5 (trial 0)")
    with SweepView(sweep, lines.append, live=True) as live:  # the terminal's table renders the same trials
        live.update(trials, counts, best)

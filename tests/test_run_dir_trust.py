"""A copied run directory is untrusted: its data.json names the folder the run's data paths resolve in, and
that folder widens nothing. Data is read only inside the folders the command may read (the working directory,
the spec's or run's own folder, --root), so no run directory can make specgrad read, train on or quote another
file (an SSH key, say). A sweep file's base spec obeys the same folders as extends."""

import json

import numpy as np
import pytest
from conftest import run_cli

SECRET = "-----BEGIN OPENSSH PRIVATE KEY----- b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9u"
SPEC = """\
specgrad: 1
name: trust
data: {source: csv, path: d.csv, columns: {x: [a, b], y: [c]}}
model: {inputs: {x: [2]}, nodes: [{y_hat: {layer: linear, input: x, units: 1}}], output: y_hat}
loss: mse
optimizer: {type: sgd, lr: 0.1}
train: {steps: 5}
"""


@pytest.fixture
def layout(tmp_path):
    """project/ with a spec, its data and a trained run; victim/ with a 'secret' named like the data file."""
    project, victim, elsewhere = tmp_path / "project", tmp_path / "victim", tmp_path / "elsewhere"
    for folder in (project, victim, elsewhere):
        folder.mkdir()
    rng = np.random.default_rng(0)
    rows = "\n".join(",".join(f"{v:.6f}" for v in rng.standard_normal(3)) for _ in range(20))
    (project / "d.csv").write_text("a,b,c\n" + rows + "\n")
    (project / "spec.yaml").write_text(SPEC)
    (victim / "d.csv").write_text(f"{SECRET}\nnot,a,number\n")
    np.savez(project / "in.npz", x=rng.standard_normal((3, 2)))
    result = run_cli("train", "spec.yaml", "--run-dir", "runs/r", "--quiet", cwd=project)
    assert result.returncode == 0, result.stderr
    return project, victim, elsewhere


def point_data_json_at(run, folder):
    state = json.loads((run / "data.json").read_text())
    state["base_dir"] = str(folder)
    (run / "data.json").write_text(json.dumps(state))


def test_a_data_json_pointing_elsewhere_reads_nothing_there(layout):
    project, victim, elsewhere = layout
    run = project / "runs" / "r"
    point_data_json_at(run, victim)
    for args in (("eval", run), ("train", run / "spec.yaml", "--run-dir", elsewhere / "again"), ("validate", run)):
        result = run_cli(*args, cwd=project)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert "outside the folders a spec may read" in result.stdout + result.stderr, args
        assert "where the run's data.json puts it" in result.stdout + result.stderr, args
        assert "OPENSSH" not in result.stdout + result.stderr and "b3Bl" not in result.stdout + result.stderr, args
    exported = run_cli("export", run, "--output", elsewhere / "m.onnx", cwd=project)
    assert exported.returncode in (0, 1) and "b3Bl" not in exported.stdout + exported.stderr
    diagnosed = run_cli("diagnose", run, cwd=project)
    assert "b3Bl" not in diagnosed.stdout + diagnosed.stderr


def test_a_run_evaluated_from_another_folder_names_the_flag_that_allows_it(layout):
    project, _, elsewhere = layout
    run = project / "runs" / "r"
    refused = run_cli("eval", run, cwd=elsewhere)
    assert refused.returncode == 1 and "add --root DIR" in refused.stderr
    allowed = run_cli("eval", run, "--root", project, cwd=elsewhere)
    assert allowed.returncode == 0, allowed.stderr
    assert json.loads(allowed.stdout)["step"] == 5
    exported = run_cli("export", run, "--output", elsewhere / "m.onnx", "--root", project, cwd=elsewhere)
    assert exported.returncode == 0 and "onnxruntime matches specgrad predict" in exported.stdout, exported.stderr


def test_a_run_the_api_returns_reads_its_data_where_its_spec_could(layout, monkeypatch):
    """``train`` returns a Run that keeps the folders its spec could read: evaluated from anywhere."""
    import specgrad

    project, _, elsewhere = layout
    monkeypatch.chdir(project)
    run = specgrad.train(specgrad.load("spec.yaml"), project / "runs" / "api")
    monkeypatch.chdir(elsewhere)
    assert run.evaluate()["step"] == 5 and run.spec.data["name"] == "trust"
    opened = specgrad.open_run(run.path)
    assert opened.spec.data["name"] == "trust"  # the spec's values: no data read
    with pytest.raises(specgrad.SpecError, match="add --root DIR"):
        opened.evaluate()
    assert specgrad.open_run(run.path, roots=[project]).evaluate()["step"] == 5
    diagnosed = run_cli("diagnose", run.path, "--root", project, "--format", "json", cwd=elsewhere)
    assert diagnosed.returncode == 0 and "cannot load the run's spec and data" not in diagnosed.stdout


def test_predict_needs_no_training_data(layout):
    project, _, elsewhere = layout
    run = project / "runs" / "r"
    (project / "d.csv").unlink()
    result = run_cli("predict", run, project / "in.npz", cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 4  # a header and three predictions


def test_a_sweep_files_spec_obeys_the_folders_a_spec_may_read(layout):
    project, victim, _ = layout
    sweeps = project / "sweeps"
    sweeps.mkdir()
    sweep = sweeps / "s.yaml"
    sweep.write_text(
        f"sweep: 1\nspec: {victim / 'd.csv'}\nparams:\n  optimizer.lr: {{choice: [0.1, 0.01]}}\n"
        "objective: {metric: train.loss, mode: min}\nsampler: grid\n"
    )
    result = run_cli("validate", sweep, cwd=sweeps)
    assert result.returncode == 1
    assert "outside the folders a sweep file may read" in result.stdout, result.stdout
    assert "OPENSSH" not in result.stdout + result.stderr and "b3Bl" not in result.stdout + result.stderr


def test_links_planted_in_a_run_directory_are_never_written_through_nor_read(layout, tmp_path):
    project, victim, elsewhere = layout
    run = project / "runs" / "r"
    precious = victim / "precious.txt"
    precious.write_text("precious\n")
    # plot.png: replaced, not written through
    pytest.importorskip("matplotlib")  # specgrad[plot]
    (run / "plot.png").symlink_to(precious)
    plotted = run_cli("plot", run, cwd=project)
    assert plotted.returncode == 0, plotted.stderr
    assert precious.read_text() == "precious\n" and not (run / "plot.png").is_symlink()
    assert (run / "plot.png").stat().st_mode & 0o777 == 0o666 & ~_umask()  # as any file written by open()
    # summary.json pointing at a secret: runs and compare do not read it
    (victim / "secret.json").write_text(json.dumps({"status": "SECRET-STATUS", "train": {"loss": 424242}}))
    (run / "summary.json").unlink()
    (run / "summary.json").symlink_to(victim / "secret.json")
    for args in (("runs", project / "runs"), ("compare", run, run)):
        result = run_cli(*args, cwd=project)
        assert "SECRET-STATUS" not in result.stdout + result.stderr and "424242" not in result.stdout, args
    # checkpoints/ pointing elsewhere: a run refuses to write there
    fresh = elsewhere / "fresh"
    fresh.mkdir()
    (fresh / "checkpoints").symlink_to(victim, target_is_directory=True)
    result = run_cli("train", "spec.yaml", "--run-dir", fresh, "--quiet", cwd=project)
    assert result.returncode == 1 and "symbolic link" in result.stderr, result.stderr
    assert sorted(p.name for p in victim.iterdir()) == ["d.csv", "precious.txt", "secret.json"]


def test_links_planted_in_a_sweep_folder_are_never_written_through(layout):
    project, victim, _ = layout
    precious = victim / "precious.txt"
    precious.write_text("precious\n")
    sweep = project / "s.yaml"
    sweep.write_text(
        "sweep: 1\nspec: spec.yaml\nparams:\n  optimizer.lr: {choice: [0.1]}\n"
        "objective: {metric: train.loss, mode: min}\nsampler: grid\n"
    )
    folder = project / "sweep-out"
    folder.mkdir()
    (folder / "workers.log").symlink_to(precious)
    result = run_cli("sweep", sweep, "--dir", folder, "--quiet", cwd=project, timeout=120)
    assert result.returncode != 0 and precious.read_text() == "precious\n", result.stderr
    (folder / "workers.log").unlink()
    (folder / "study.db").symlink_to(victim / "other.db")
    result = run_cli("sweep", sweep, "--dir", folder, "--quiet", cwd=project, timeout=120)
    assert result.returncode != 0 and "symbolic link" in result.stderr and not (victim / "other.db").exists()


def test_a_study_database_cannot_send_a_trial_outside_the_sweep_folder(layout):
    """A copied sweep folder's study.db may record any run directory for a queued trial: only trial-NNNN is
    accepted; the trial fails with the reason, nothing is written where the database said."""
    optuna = pytest.importorskip("optuna")
    project, victim, _ = layout
    sweep = project / "s.yaml"
    text = (
        "sweep: 1\nspec: spec.yaml\nparams:\n  optimizer.lr: {choice: [0.1, 0.05]}\n"
        "objective: {metric: train.loss, mode: min}\nsampler: random\ntrials: TRIALS\n"
    )
    sweep.write_text(text.replace("TRIALS", "1"))
    folder = project / "sweep-out"
    assert run_cli("sweep", sweep, "--dir", folder, "--quiet", cwd=project, timeout=120).returncode == 0
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{folder / 'study.db'}")
    for name in (str(victim / "planted"), "../../planted", "trial-0001/../../x"):
        study.enqueue_trial({"optimizer.lr": 0.1}, user_attrs={"run_dir": name})
    sweep.write_text(text.replace("TRIALS", "4"))
    run_cli("sweep", sweep, "--dir", folder, "--quiet", cwd=project, timeout=120)
    assert not (victim / "planted").exists() and not (project / "planted").exists()
    failed = [t for t in optuna.load_study(study_name="s", storage=f"sqlite:///{folder / 'study.db'}").trials]
    errors = [t.user_attrs.get("error", "") for t in failed if t.number > 0]
    assert len(errors) == 3 and all("not a trial-NNNN here" in e for e in errors), errors


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask

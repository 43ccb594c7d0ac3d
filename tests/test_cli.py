"""The CLI as a user runs it: exit codes, located errors, no tracebacks, run directory contents."""

import json

import pytest
from conftest import MODELS, ROOT, run_cli, tiered

BAD = """\
specgrad: 1
name: bad
data: {source: synthetic, function: sin(3*x), n: 20}
model:
  inputs: {x: []}
  params: {k: {shape: [6]}}
  nodes:
    - y_hat: {op: matmull, args: [phi, k]}
  output: y_hat
loss: sse
optimizer: {type: sgd, lr_rate: 1.0e-3}
train: {steps: many}
"""


def test_validate_reports_each_error_located(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(BAD)
    result = run_cli("validate", spec)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        f"{spec}:8:19: error: unknown op 'matmull'; did you mean 'matmul'?",
        f"{spec}:11:24: error: unknown key 'lr_rate' in optimizer; did you mean 'lr'?",
        f"{spec}:12:16: error: train.steps must be an integer, got 'many'",
    ]
    assert "Traceback" not in result.stderr


def test_validate_github_and_json_formats(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(BAD)
    gh = run_cli("validate", spec, "--format", "github")
    assert (
        gh.stdout.splitlines()[0] == f"::error file={spec},line=8,col=19::unknown op 'matmull'; did you mean 'matmul'?"
    )
    js = run_cli("validate", spec, "--format", "json")
    first = json.loads(js.stdout.splitlines()[0])
    assert (first["line"], first["col"], first["severity"]) == (8, 19, "error")


def test_validate_models_folder_passes():
    result = run_cli("validate", MODELS)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "name",
    tiered(
        [
            "optimizer_nesterov",
            "optimizer_group_unmatched",
            "validation_settings",
            "metric_for_another_loss",
            "standardize_target",
            "standardize_unknown_field",
        ]
    ),
)
def test_train_reports_what_validate_reports_before_running(name, tmp_path):
    """Checks of the run's settings are part of validation: `train` stops with validate's exact messages,
    before it loads data or makes the run directory."""
    bad = ROOT / "tests" / "data" / "bad_specs"
    result = run_cli("train", bad / f"{name}.yaml", "--run-dir", tmp_path / "run")
    assert result.returncode == 1 and not (tmp_path / "run").exists()
    expected = (bad / f"{name}.expected").read_text().splitlines()
    assert result.stderr.splitlines() == [f"{bad}/{line}" for line in expected]


def test_nothing_to_resume_is_an_error_without_traceback():
    result = run_cli("train", MODELS / "poly.yaml", "--set", "name=never_trained", "--resume")
    assert result.returncode == 1
    assert (
        result.stderr
        == "error: nothing to resume: no run of 'never_trained' under runs/never_trained; give --run-dir\n"
    )


def test_usage_error_exits_2():
    assert run_cli("train").returncode == 2
    assert run_cli("validate", "--format", "xml", "x.yaml").returncode == 2


def test_missing_file_is_a_located_error(tmp_path):
    result = run_cli("train", tmp_path / "nope.yaml")
    assert result.returncode == 1
    assert str(tmp_path / "nope.yaml") in result.stderr and "Traceback" not in result.stderr


def test_set_override_is_located_at_the_flag(tmp_path):
    result = run_cli("train", MODELS / "poly.yaml", "--set", "optimizer.lr=-1", "--run-dir", tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"--set optimizer.lr=-1:1:14: error: optimizer.lr must be > 0, got -1 (overrides {MODELS / 'poly.yaml'}:29:28)"
    )


@pytest.mark.slow
def test_train_writes_the_run_directory(tmp_path):
    run = tmp_path / "run"
    result = run_cli("train", MODELS / "poly.yaml", "--set", "train.steps=300", "--run-dir", run)
    assert result.returncode == 0, result.stderr
    assert "completed: 300 steps" in result.stdout
    assert sorted(p.name for p in run.iterdir()) == [
        ".lock",
        "checkpoints",
        "data.json",
        "metrics.jsonl",
        "spec.yaml",
        "summary.json",
    ]
    assert [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("step")] == ["step-00000300"]
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == 300 and {"step", "epoch", "loss", "lr", "grad_norm"} <= set(lines[-1])
    # the resolved spec trains again as it is
    assert run_cli("validate", run / "spec.yaml").returncode == 0


@pytest.mark.slow
def test_validate_folder_skips_fragments_and_accepts_globs(tmp_path):
    (tmp_path / "_base.yaml").write_text((MODELS / "poly.yaml").read_text())
    (tmp_path / "_parts").mkdir()
    (tmp_path / "_parts" / "opt.yaml").write_text("type: sgd\nlr: 0.1\n")  # a fragment: invalid on its own
    (tmp_path / "exp.yaml").write_text("extends: _base.yaml\noptimizer: {include: _parts/opt.yaml}\n")
    result = run_cli("validate", tmp_path)
    assert (result.returncode, result.stderr.strip()) == (0, "1 of 1 spec(s) valid")
    result = run_cli("validate", f"{tmp_path}/*.yaml", MODELS / "poly.yaml")
    assert (result.returncode, result.stderr.strip()) == (0, "3 of 3 spec(s) valid")  # a glob names fragments too
    assert run_cli("validate", tmp_path / "_parts" / "opt.yaml").returncode == 1


@pytest.mark.slow
def test_validate_exit_codes(tmp_path):
    assert run_cli("validate", f"{tmp_path}/*.yaml").returncode == 2  # nothing matched: usage error
    assert run_cli("validate", tmp_path).returncode == 2  # an empty folder
    assert run_cli("validate", tmp_path / "missing.yaml").returncode == 1  # a named file that is not there
    assert run_cli("validate", MODELS, "--set", "optimizer.lr=2").returncode == 0
    assert run_cli("validate", MODELS, "--set", "optimizer.lr=-2").returncode == 1


def test_github_format_carries_the_provenance(tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text(f"extends: {MODELS / 'poly.yaml'}\noptimizer: {{lr: -1}}\n")
    gh = run_cli("validate", child, "--format", "github")
    assert gh.stdout.strip() == (
        f"::error file={child},line=2,col=17::optimizer.lr must be > 0, got -1 (overrides {MODELS / 'poly.yaml'}:29:28)"
    )
    js = json.loads(run_cli("validate", child, "--format", "json").stdout)
    assert (js["file"], js["line"], js["col"]) == (str(child), 2, 17) and "overrides" in js["message"]


def test_pre_commit_hook_runs_validate():
    import yaml

    (hook,) = yaml.safe_load((MODELS.parent / ".pre-commit-hooks.yaml").read_text())
    assert hook["entry"] == "specgrad validate --skip-non-specs" and hook["language"] == "python"
    import re

    assert re.search(hook["exclude"], "models/_base.yaml") and not re.search(hook["exclude"], "models/poly.yaml")


def test_help_and_import_load_nothing_heavy():
    """`specgrad --help` and `import specgrad` stay quick: no numpy, jsonschema, yaml, nor rich's help
    formatter (typer itself is needed for --help). Which modules load, not how long they take."""
    import subprocess
    import sys

    heavy = ["numpy", "jsonschema", "yaml", "rich", "pydantic"]
    show = f"import sys; print(' '.join(m for m in {heavy!r} if m in sys.modules))"
    for code in [
        "import specgrad",
        "import sys; sys.argv = ['specgrad', '--help']\n"
        "from specgrad.cli import main\ntry:\n    main()\nexcept SystemExit:\n    pass",
    ]:
        done = subprocess.run([sys.executable, "-c", f"{code}\n{show}"], cwd=ROOT, capture_output=True, text=True)
        assert done.stdout.splitlines()[-1] == "", (code, done.stdout, done.stderr)


def test_a_file_name_cannot_forge_a_github_annotation(tmp_path):
    """GitHub Actions reads a line starting "::error" in any output as a command: a spec whose file name
    holds a newline is shown with the newline escaped, in the text format as in the github one."""
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "x\n::error file=README.md,line=1::FORGED.yaml").write_text(
        (MODELS / "poly.yaml").read_text().replace("lr: 1.0e-3", "lr: -1")
    )
    for fmt in ("text", "github"):
        result = run_cli("validate", folder, "--format", fmt, cwd=tmp_path)
        assert result.returncode == 1
        lines = (result.stdout + result.stderr).splitlines()
        assert not any(line.startswith("::error file=README.md") for line in lines), lines
        assert "x\\n::error" in result.stdout + result.stderr or fmt == "github"

"""Command-line details a user meets on the way: --version, --set mistakes as usage errors, the results a
train ends with, the progress bar before the first step, Ctrl-C before anything is saved, and messages
that say what is accepted."""

import subprocess
import sys
import textwrap

import pytest
from conftest import MODELS, run_cli

from specgrad import __version__


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout == f"specgrad {__version__}\n"


SET_MISTAKES = [
    ("optimizer.lr", "--set optimizer.lr:1:1: error: expected --set KEY=VALUE, e.g. --set optimizer.lr=0.01"),
    ("seed.x=1", "--set seed.x=1:1:1: error: cannot set 'seed.x': is not a mapping or a list"),
    (
        "model.nodes.7.x=1",
        ("--set model.nodes.7.x=1:1:1: error: cannot set 'model.nodes.7.x': index 7 is out of range for a list of 2"),
    ),
    ("optimizer..lr=1", "--set optimizer..lr=1:1:1: error: empty name in key path 'optimizer..lr'"),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    "command,flag,message",
    [("train", *mistake) for mistake in SET_MISTAKES]
    + [(command, *SET_MISTAKES[1]) for command in ("validate", "config", "graph", "gradcheck")],
)
def test_set_mistakes_are_usage_errors(command, flag, message, tmp_path):
    result = run_cli(command, MODELS / "poly.yaml", "--set", flag, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_a_well_formed_set_that_makes_the_spec_invalid_stays_a_spec_error():
    assert run_cli("validate", MODELS / "poly.yaml", "--set", "optimizer.lr=-1").returncode == 1


@pytest.mark.slow
def test_train_ends_with_the_final_metrics_of_every_split(tmp_path):
    result = run_cli("train", MODELS / "logistic_regression.yaml", "--set", "train.steps=50", "--run-dir", tmp_path)
    assert result.returncode == 0, result.stderr
    import json

    summary = json.loads((tmp_path / "summary.json").read_text())
    lines = result.stdout.splitlines()
    end = lines[lines.index(next(line for line in lines if line.startswith("completed: 50 steps"))) :]
    for split in ("train", "val", "test"):
        shown = next(line for line in end if line.strip().startswith(f"{split}:"))
        for name in ("loss", "accuracy", "log_loss"):
            assert f"{name} {summary[split][name]:.6g}" in shown


def test_the_progress_bar_shows_no_loss_before_the_first_step(monkeypatch):
    from specgrad import cli

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    progress = cli.ProgressView(quiet=False)
    hooks = progress.hooks()
    hooks.on_start(0, 100)

    def shown():
        task = progress.bar.tasks[0]
        return " ".join(str(column.render(task)) for column in progress.bar.columns)

    assert "nan" not in shown() and "loss" not in shown()
    hooks.on_step(10, 0.25)
    assert "loss 0.25" in shown()


@pytest.mark.slow
def test_ctrl_c_before_any_checkpoint_does_not_advise_resume(tmp_path):
    """Interrupted while the data loads: no run directory, no checkpoint, nothing --resume could continue."""
    script = textwrap.dedent(f"""
        import sys
        from specgrad.run import trainer
        def interrupted(*args, **kwargs):
            raise KeyboardInterrupt
        trainer.Trainer.__init__ = interrupted
        from specgrad import cli
        sys.argv = ["specgrad", "train", {str(MODELS / "poly.yaml")!r}, "--run-dir", {str(tmp_path / "run")!r}]
        cli.main()
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 130
    assert "--resume" not in result.stderr and "nothing to resume" in result.stderr
    assert not (tmp_path / "run").exists()


BATCH = """\
specgrad: 1
name: batch
data: {source: synthetic, function: sin(3*x), n: 20}
model:
  inputs: {x: []}
  params: {k: {shape: [6]}}
  nodes:
    - y_hat: powers(x, 5) @ k
  output: y_hat
loss: sse
optimizer: {type: sgd, lr: 1.0e-3}
train: {steps: 10, batch_size: "64"}
"""


@pytest.mark.slow
def test_a_batch_size_in_quotes_says_what_is_accepted(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(BATCH)
    result = run_cli("validate", path)
    assert result.returncode == 1
    assert result.stdout.strip() == (
        f"{path}:12:32: error: train.batch_size must be a positive integer or 'full', got '64'"
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "where,bad,rule",
    [
        (
            "name: batch",
            "name: -batch",
            "'-batch' is not a valid name here (ASCII letters, digits, _, . and -; not starting with _, . or -)",
        ),
        (
            "    - y_hat:",
            "    - y-hat:",
            "'y-hat' is not a valid name here (ASCII letters, digits and _; not starting with a digit)",
        ),
    ],
)
def test_the_message_for_a_name_states_the_rule_applied(where, bad, rule, tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(BATCH.replace('"64"', "full").replace(where, bad))
    result = run_cli("validate", path)
    assert result.returncode == 1 and rule in result.stdout, result.stdout


def test_the_name_rules_are_read_off_the_patterns():
    import re

    from specgrad.base.components import NAME
    from specgrad.spec.schema import build_schema
    from specgrad.spec.validate import pattern_rule

    run_name = build_schema()["properties"]["name"]["pattern"]
    for pattern, good, bad in (
        (NAME["pattern"], ["a", "_b2", "x_1"], ["2a", "a-b", "a.b", ""]),
        (run_name, ["2024.run-1", "a_b", "A"], ["-a", "_a", ".a", "a b", ""]),
    ):
        rule = pattern_rule(pattern)
        assert rule is not None
        assert all(re.match(pattern, name) for name in good) and not any(re.match(pattern, name) for name in bad)
        # what the rule says is barred at the start is what the pattern bars there
        for first in "a_.-5":
            if re.match(pattern, "a" + first) is None:  # not allowed anywhere: nothing to say at the start
                continue
            barred = re.match(pattern, first + "a") is None
            said = {"a": "a letter", "5": "a digit"}.get(first, first)
            assert barred == (said in rule.split("not starting with", 1)[-1] and "not starting with" in rule), (
                pattern,
                first,
                rule,
            )

"""A run killed after a checkpoint and resumed ends bitwise equal to an uninterrupted run."""
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import MODELS, run_cli
from specgrad.run.checkpoint import latest_checkpoint
from specgrad.run.trainer import RunError, Trainer
from specgrad.spec import load_spec

MINIBATCH = ["--set", "train.batch_size=32", "--set", "train.steps=300", "--set", "train.checkpoint.every=50",
             "--set", "train.log_every=1"]   # 7 shuffled batches an epoch: checkpoints fall mid-epoch


def kill_at(step, run_dir, overrides):
    """Train in a child process that SIGKILLs itself right after finishing ``step``."""
    code = textwrap.dedent(f"""
        import os, signal
        from specgrad.spec import load_spec
        from specgrad.run.trainer import Hooks, Trainer
        def on_step(step, loss):
            if step == {step}:
                os.kill(os.getpid(), signal.SIGKILL)
        Trainer(load_spec({str(MODELS / 'poly.yaml')!r}, {overrides!r}), {str(run_dir)!r}, Hooks(on_step=on_step)).run()
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def final_state(run_dir):
    ckpt = latest_checkpoint(run_dir / "checkpoints")
    return ckpt.step, ckpt.arrays, (run_dir / "metrics.jsonl").read_text()


@pytest.mark.parametrize("kill_step", [73, 100, 299])
def test_killed_and_resumed_run_is_bitwise_equal(tmp_path, kill_step):
    overrides = [v for v in MINIBATCH if v != "--set"]
    assert run_cli("train", MODELS / "poly.yaml", *MINIBATCH, "--run-dir", tmp_path / "a", "--quiet").returncode == 0
    kill_at(kill_step, tmp_path / "b", overrides)
    assert latest_checkpoint(tmp_path / "b" / "checkpoints").step < kill_step     # it really died mid-run
    resumed = run_cli("train", MODELS / "poly.yaml", *MINIBATCH, "--run-dir", tmp_path / "b", "--resume", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    step_a, arrays_a, log_a = final_state(tmp_path / "a")
    step_b, arrays_b, log_b = final_state(tmp_path / "b")
    assert step_a == step_b == 300
    assert arrays_a.keys() == arrays_b.keys()
    for key in arrays_a:
        assert arrays_a[key].tobytes() == arrays_b[key].tobytes(), key
    assert log_a == log_b


def test_resume_without_checkpoint_is_an_error(tmp_path):
    with pytest.raises(RunError, match="nothing to resume"):
        Trainer(load_spec(MODELS / "poly.yaml"), tmp_path).run(resume=True)


def test_resume_with_a_changed_spec_is_refused(tmp_path):
    Trainer(load_spec(MODELS / "poly.yaml", ["train.steps=100"]), tmp_path).run()
    with pytest.raises(RunError, match="spec differs"):
        Trainer(load_spec(MODELS / "poly.yaml", ["train.steps=100", "optimizer.lr=0.002"]), tmp_path).run(resume=True)


def test_same_spec_and_seed_give_the_same_bits(tmp_path):
    a = Trainer(load_spec(MODELS / "poly.yaml", ["train.batch_size=16", "train.steps=50"]), tmp_path / "a")
    b = Trainer(load_spec(MODELS / "poly.yaml", ["train.batch_size=16", "train.steps=50"]), tmp_path / "b")
    a.run(), b.run()
    assert a.params["k"].tobytes() == b.params["k"].tobytes()

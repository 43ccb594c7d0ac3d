"""A run killed anywhere (mid-epoch, mid-accumulation, inside a checkpoint write) and resumed ends bitwise
equal to an uninterrupted run: parameters, optimizer state, RNG, schedule position, best metric, the
checkpoints kept, metrics.jsonl and summary.json."""

import random

import pytest
from conftest import tiered
from faults import CHECKPOINT_STAGES, POLY, RICH, assert_same_run, killed_run, resume

from specgrad.run.checkpoint import latest_checkpoint
from specgrad.run.trainer import RunError, Trainer
from specgrad.spec import load_spec

pytestmark = pytest.mark.usefixtures("no_fsync")


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_killed_at_a_random_micro_batch_and_resumed_is_bitwise_equal(tmp_path, uninterrupted, seed):
    batch = random.Random(seed).randrange(3 * 4 + 1, 120)  # after the first checkpoint (step 4)
    killed_run(POLY, RICH, tmp_path, batch=batch)
    resumed_from = latest_checkpoint(tmp_path / "checkpoints").step
    assert resumed_from < (batch - 1) // 3 + 1  # it really died before the end
    assert_same_run(resume(tmp_path), uninterrupted)


def test_killed_mid_accumulation_mid_epoch(tmp_path, uninterrupted):
    batch = 3 * 34 + 2  # micro-batch 104 (1-based): the 2nd of step 35's three, row block 3 of 5
    index = batch - 1  # of epoch 20; late, where validations stop improving by min_delta
    assert index % 3 == 1 and index % 5 == 3
    killed_run(POLY, RICH, tmp_path, batch=batch)
    assert latest_checkpoint(tmp_path / "checkpoints").step == 33  # the last save before the kill
    assert_same_run(resume(tmp_path), uninterrupted)


def test_a_signal_mid_accumulation_drops_the_step_and_resumes_bitwise_equal(tmp_path, uninterrupted):
    """A step of many micro-batches heeds SIGTERM within one: the step is dropped, the batches put back as
    they were (here an epoch began inside it: batch 15 of 5 an epoch reshuffled), the last complete step
    saved; resuming ends as the uninterrupted run."""
    import os
    import signal

    import specgrad as sg

    def terminate_during(index):
        if index == 16:  # step 6's second micro-batch (15, 16, 17): the third is not computed
            os.kill(os.getpid(), signal.SIGTERM)

    run = sg.train(sg.load(POLY, RICH), tmp_path, on_batch=terminate_during)
    assert run.summary["status"] == "interrupted" and run.summary["steps"] == 5
    assert run.summary["signal"] == signal.SIGTERM
    assert latest_checkpoint(tmp_path / "checkpoints").step == 5
    assert_same_run(resume(tmp_path), uninterrupted)


def test_a_signal_mid_accumulation_puts_back_the_model_state_too(tmp_path):
    """batchnorm's running statistics, moved by the dropped step's first micro-batches, are put back: the
    resumed run ends as the uninterrupted one (mlp_moons: batchnorm and dropout)."""
    import os
    import signal

    import specgrad as sg

    spec = sg.load(POLY.parent / "mlp_moons.yaml", ["train.accumulate=3", "train.epochs=2"])
    whole = sg.train(spec, tmp_path / "whole")

    def terminate_during(index):
        if index == 16:
            os.kill(os.getpid(), signal.SIGTERM)

    stopped = sg.train(spec, tmp_path / "stopped", on_batch=terminate_during)
    assert stopped.summary["status"] == "interrupted" and stopped.summary["steps"] == 5
    resumed = sg.train(spec, tmp_path / "stopped", resume=True)
    assert resumed.summary["train"] == whole.summary["train"]
    a = latest_checkpoint(tmp_path / "whole" / "checkpoints").arrays
    b = latest_checkpoint(tmp_path / "stopped" / "checkpoints").arrays
    assert a.keys() == b.keys() and all(a[k].tobytes() == b[k].tobytes() for k in a)


@pytest.mark.parametrize("stage", tiered(CHECKPOINT_STAGES))
def test_killed_inside_a_checkpoint_write(tmp_path, uninterrupted, stage):
    killed_run(POLY, RICH, tmp_path, stage=stage, save=6)
    assert_same_run(resume(tmp_path), uninterrupted)


def test_killed_twice_resumed_twice(tmp_path, uninterrupted):
    killed_run(POLY, RICH, tmp_path, batch=30)
    killed_run(POLY, RICH, tmp_path, batch=40, resume=True)
    assert_same_run(resume(tmp_path), uninterrupted)


def test_resume_without_checkpoint_is_an_error(tmp_path):
    with pytest.raises(RunError, match="nothing to resume"):
        Trainer(load_spec(POLY), tmp_path).run(resume=True)


def test_same_spec_and_seed_give_the_same_bits(tmp_path):
    a = Trainer(load_spec(POLY, ["train.batch_size=16", "train.steps=50"]), tmp_path / "a")
    b = Trainer(load_spec(POLY, ["train.batch_size=16", "train.steps=50"]), tmp_path / "b")
    a.run(), b.run()
    assert a.params["k"].tobytes() == b.params["k"].tobytes()

"""Lightning DDP on 2 CPU processes (gloo), and resuming a run killed by SIGINT or SIGTERM, on the tiny model."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from conftest import ROOT, tokenize_with_teacher
from stage_runner import run_stage

TRAIN = [sys.executable, str(ROOT / "stages" / "train.py")]


def prepare(folder, params: dict, teacher) -> None:
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    run_stage("download.py")
    tokenize_with_teacher(folder, teacher)


def env() -> dict:
    return {**os.environ, "WANDB_SILENT": "true", "PYTHONPATH": str(ROOT)}


def live_metrics(folder) -> dict:
    return json.loads((folder / "metrics/train/metrics.json").read_text())


def test_ddp_on_two_cpu_processes(in_tmp, params, tiny_teacher):
    params["train"].update(strategy="ddp", devices=2, accelerator="cpu", num_train_epochs=2)
    prepare(in_tmp, params, tiny_teacher)
    result = subprocess.run(TRAIN, cwd=in_tmp, env=env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in result.stderr
    metrics = live_metrics(in_tmp)
    # 32 train rows and 64 perturbed copies in batches of 8 make 12 batches: 6 per rank and epoch, 12 steps in 2.
    assert metrics["epoch"] == 1 and metrics["step"] == 11
    logged = (metrics["val"]["mcc"], metrics["val"]["loss"], metrics["train"]["loss"])
    assert all(math.isfinite(value) for value in logged)  # no rank logged a NaN
    assert (in_tmp / "models/model/model.safetensors").is_file()
    assert not (in_tmp / "models/checkpoints").exists()  # a finished run leaves nothing to resume


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_interrupted_run_resumes_from_its_last_epoch(in_tmp, params, stop, tiny_teacher):
    epochs = 20
    params["train"].update(num_train_epochs=epochs, early_stopping_patience=epochs, augmented_per_sentence=0)
    prepare(in_tmp, params, tiny_teacher)
    last = in_tmp / "models/checkpoints/last.ckpt"
    run = subprocess.Popen(TRAIN, cwd=in_tmp, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not last.is_file() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    run.send_signal(stop)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode != 0, "the run finished before it could be interrupted"
    assert last.is_file()
    assert "last.ckpt holds the last finished epoch" in stderr
    finished_before = live_metrics(in_tmp)["epoch"]
    assert 0 <= finished_before < epochs - 1

    result = subprocess.run(TRAIN, cwd=in_tmp, env=env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming from models/checkpoints/last.ckpt" in result.stderr
    metrics = live_metrics(in_tmp)
    assert metrics["epoch"] == epochs - 1 and metrics["step"] == epochs * 4 - 1  # 4 steps an epoch, none lost
    mcc_rows = (in_tmp / "metrics/train/plots/metrics/val/mcc.tsv").read_text().splitlines()[1:]
    assert len(mcc_rows) >= epochs  # the curve goes on from the interrupted run's
    assert (in_tmp / "models/model/model.safetensors").is_file() and not last.exists()


def test_first_ctrl_c_is_recorded_and_stops_at_the_next_batch_a_second_interrupts_at_once():
    from acceptability.model.interrupt import StopOnSigint

    stopper, before = StopOnSigint(), signal.getsignal(signal.SIGINT)
    with stopper.installed():
        os.kill(os.getpid(), signal.SIGINT)  # a real signal to this process; the handler runs before kill returns
        assert stopper.requested
        with pytest.raises(KeyboardInterrupt):
            stopper.on_train_batch_end(None, None, None, None, 0)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before  # restored


def test_changed_params_start_afresh(in_tmp, params, tiny_teacher):
    params["train"].update(num_train_epochs=1)
    prepare(in_tmp, params, tiny_teacher)
    checkpoints = in_tmp / "models/checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "run.json").write_text(json.dumps({"fingerprint": "another run"}))
    (checkpoints / "last.ckpt").write_bytes(b"from another run")
    result = subprocess.run(TRAIN, cwd=in_tmp, env=env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming" not in result.stderr
    assert live_metrics(in_tmp)["epoch"] == 0

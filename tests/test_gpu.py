"""On a CUDA GPU: the default `train.accelerator: auto` trains there, a seed repeats a run exactly, and the model
it saves evaluates and exports on a CPU. Skipped where torch sees no GPU, as in CI: run `pytest tests/test_gpu.py`
on a GPU machine."""

import json

import pandas as pd
import pytest
import torch
from stage_runner import run_stage
from test_training import train_and_evaluate

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed", "16-mixed"])
def test_gpu_training_repeats_exactly_and_serves_on_a_cpu(prepared, params, precision):
    params["train"].update(accelerator="auto", precision=precision)
    torch.cuda.reset_peak_memory_stats()
    first, metrics_a, predictions_a = train_and_evaluate(prepared, params, "a")
    assert torch.cuda.max_memory_allocated() > 0, "auto did not put the model on the GPU"
    second, metrics_b, predictions_b = train_and_evaluate(prepared, params, "b")

    assert first == second
    assert first["epochs_run"] == 2 and first["global_steps"] == 12
    assert metrics_a == metrics_b
    pd.testing.assert_frame_equal(predictions_a, predictions_b)
    if precision == "32-true":  # the CPU's fp32 evaluation agrees with the GPU's own validation
        assert metrics_a["val"]["mcc"] == pytest.approx(first["val_mcc"], abs=1e-6)

    run_stage(
        "export.py",
        "--model",
        str(prepared / "a" / "model"),
        "--out",
        str(prepared / "onnx"),
        "--metrics",
        str(prepared / "export.json"),
    )
    card = json.loads((prepared / "onnx" / "model_card.json").read_text())
    assert card["gates"]["fp32_max_abs_logit_diff"] <= 1e-4

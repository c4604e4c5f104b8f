"""int8 on any CPU: the export measures int8 under qemu as other CPUs, and a server checks the card's golden set on
the CPU it runs on, falling back to fp32 where int8 does not reproduce it. The servers here run under
qemu-x86_64 -cpu Haswell, an AVX2-only CPU without VNNI, as many CI runners and cloud hosts are."""

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from conftest import ROOT

from acceptability.core.machine import cpu_name
from acceptability.inference.card import read_card
from acceptability.inference.selfcheck import choose, golden_diff
from acceptability.ops.loadtest import free_port, start_server

pytestmark = pytest.mark.skipif(platform.machine() != "x86_64", reason="qemu-x86_64 runs this venv on x86-64 only")


@pytest.fixture(scope="module")
def qemu() -> str:
    """qemu-x86_64, installed from Debian when missing (.ci/qemu-user)."""
    subprocess.run(["bash", str(ROOT / ".ci/qemu-user")], check=True, capture_output=True)
    return os.environ.get("COLA_QEMU") or shutil.which("qemu-x86_64")


@pytest.fixture(scope="module")
def signed_export(exported, tmp_path_factory, tiny_model_dir) -> Path:
    """A tiny classifier with the 8-bit signed recipe, whose u8*s8 sums saturate on AVX2. Its weights are spread
    evenly (a trained model's are heavy-tailed), so that many weight pairs are large, as in the real model. Its golden
    logits come from the exact arithmetic (vnni), and its gate is opened as on the VNNI machine where it passes."""
    import torch
    from stage_runner import run_stage
    from transformers import BertForSequenceClassification

    folder = tmp_path_factory.mktemp("signed")
    for name in ("conf", "data", "models", "params.yaml"):
        copier = shutil.copytree if (exported / name).is_dir() else shutil.copy2
        copier(exported / name, folder / name)
    shutil.rmtree(folder / "models/onnx")
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, torch.nn.Linear):
                layer.weight.uniform_(-0.5, 0.5)
    model.save_pretrained(folder / "models/model", safe_serialization=True)
    params = yaml.safe_load((folder / "params.yaml").read_text())
    params["export"].update(
        weight_type="int8",
        per_channel=True,
        reduce_range=False,
        fp32_nodes=[],
        emulated_isas=["vnni"],
        max_int8_mcc_drop=1.0,
    )
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        run_stage("export.py")
    finally:
        os.chdir(cwd)
    return folder / "models/onnx"


def serve_under(qemu: str, cpu: str, model_dir: Path):
    port = free_port()
    prefix = (qemu, "-cpu", cpu)
    process, _ = start_server(model_dir, port, {}, stderr=subprocess.PIPE, prefix=prefix, ready_within_s=300)
    return process, f"http://127.0.0.1:{port}"


def served_under(qemu: str, cpu: str, model_dir: Path) -> tuple[dict, str, httpx.Response, str]:
    """/readyz, /metrics and one prediction from the API run under qemu as `cpu`, then its stderr."""
    process, url = serve_under(qemu, cpu, model_dir)
    try:
        ready = httpx.get(f"{url}/readyz", timeout=30).json()
        metrics = httpx.get(f"{url}/metrics", timeout=30).text
        predicted = httpx.post(f"{url}/v1/predict", json={"sentences": ["The cat sat on the mat."]}, timeout=60)
    finally:
        stderr = stop(process)
    return ready, metrics, predicted, stderr


def stop(process) -> str:
    process.terminate()
    return "\n".join(line for line in process.communicate(timeout=60)[1].splitlines() if "TCG" not in line)


def test_the_params_check_knows_every_emulated_instruction_set():
    from acceptability.core.config import EMULATED_ISAS
    from acceptability.export.isa import EMULATED_CPU

    assert EMULATED_ISAS == tuple(EMULATED_CPU)


def test_rows_split_for_emulation_keep_every_sentence_once_in_order():
    from acceptability.export.isa import batches, chunks

    lengths = [3, 1, 4, 1, 5, 9, 2]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    arrays = {"input_ids": np.arange(offsets[-1]), "offsets": offsets}
    whole = [ids.tolist() for ids, _ in batches(arrays, 1)]
    for parts in (1, 2, 3, 7, 20):
        pieces = chunks(arrays, parts)
        assert len(pieces) == min(parts, len(lengths))
        assert [ids.tolist() for piece in pieces for ids, _ in batches(piece, 1)] == whole


def test_rows_split_for_emulation_carry_about_equal_work():
    """Short sentences first, long ones after (as validation's in-domain and out-of-domain halves): equal row counts
    would give one worker most of the tokens."""
    from acceptability.export.isa import ROW_OVERHEAD_TOKENS, chunks

    lengths = [4] * 60 + [40] * 20
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    pieces = chunks({"input_ids": np.arange(offsets[-1]), "offsets": offsets}, 2)
    work = [int(p["offsets"][-1]) + ROW_OVERHEAD_TOKENS * (len(p["offsets"]) - 1) for p in pieces]
    assert abs(work[0] - work[1]) <= 40 + ROW_OVERHEAD_TOKENS  # within one row's work
    assert [len(p["offsets"]) - 1 for p in pieces] == [63, 17]  # equal row counts: [40, 40]


def test_export_records_int8_per_instruction_set_and_a_golden_set(exported):
    export = json.loads((exported / "metrics/export.json").read_text())
    card = read_card(exported / "models/onnx")
    params = yaml.safe_load((exported / "params.yaml").read_text())["export"]
    by_isa = export["int8_by_isa"]
    assert list(by_isa) == ["native", *params["emulated_isas"]]
    for isa, cpu in (("avx2", "Haswell"), ("vnni", "Nehalem")):  # emulated, unless this CPU is one of them
        assert by_isa[isa]["cpu"] in (f"qemu-x86_64 -cpu {cpu}", f"{cpu_name()} (this CPU)")
    assert export["int8_mcc_drop"] == max(row["mcc_drop"] for row in by_isa.values())
    assert export["int8_servable"] == all(row["mcc_drop"] <= params["max_int8_mcc_drop"] for row in by_isa.values())
    assert card["gates"]["int8_by_isa"] == by_isa
    golden = card["golden"]
    assert len(golden["sentences"]) == min(params["golden_sentences"], 32)  # the tiny validation split has 32
    assert {variant: len(rows) for variant, rows in golden["logits"].items()} == {
        "fp32": len(golden["sentences"]),
        "int8": len(golden["sentences"]),
    }


def test_the_default_recipe_reproduces_its_golden_set_on_this_cpu(exported):
    """The default (unsigned) weights sum exactly on every x86 CPU: the export's CPU and qemu's agree."""
    folder = exported / "models/onnx"
    card = read_card(folder)
    assert card["int8"]["weight_type"] == "uint8"
    predictor, choice = choose(folder, card, "int8")
    assert choice.max_abs_diff["int8"] == golden_diff(predictor, card["golden"]) <= card["golden"]["tolerance"]
    fp32, _ = choose(folder, card, "fp32")
    assert golden_diff(fp32, card["golden"]) < 1e-4


@pytest.mark.qemu
def test_signed_weights_answer_differently_on_avx2_and_unsigned_ones_do_not(exported, signed_export):
    """The kernels themselves, under qemu: u8*s8 pairs saturate in 16 bits on AVX2 and not on the exact CPU."""
    from acceptability.data.encode import load_encoded
    from acceptability.export.isa import emulated_logits

    arrays = load_encoded(exported / "data/tokenized/validation.npz")
    tolerance = read_card(signed_export)["golden"]["tolerance"]
    for folder, differ in ((signed_export, True), (exported / "models/onnx", False)):
        int8 = folder / "model.int8.onnx"
        diff = abs(emulated_logits(int8, arrays, "avx2") - emulated_logits(int8, arrays, "vnni")).max()
        assert (diff > tolerance) == differ, (folder, diff)


@pytest.mark.slow
@pytest.mark.qemu
def test_api_under_avx2_falls_back_to_fp32_and_says_why(qemu, signed_export):
    ready, metrics, predicted, stderr = served_under(qemu, "Haswell", signed_export)
    assert ready["served"]["variant"] == "fp32" and ready["served"]["reason"] == "self_check_failed"
    assert ready["model_version"].startswith("fp32-") and predicted.json()["model_version"] == ready["model_version"]
    assert 'cola_served_variant{reason="self_check_failed",variant="fp32"} 1.0' in metrics
    diff = float(metrics.split('cola_golden_max_abs_diff{variant="int8"} ')[1].split()[0])
    assert diff > read_card(signed_export)["golden"]["tolerance"]
    assert "serving fp32 (self_check_failed): int8 differs from the card's" in stderr


@pytest.mark.slow
@pytest.mark.qemu
def test_api_on_a_cpu_with_exact_integer_sums_serves_int8(qemu, signed_export):
    ready, metrics, _, _ = served_under(qemu, "Nehalem", signed_export)
    assert ready["served"]["variant"] == "int8" and ready["served"]["reason"] == "self_check_passed"
    assert 'cola_served_variant{reason="self_check_passed",variant="int8"} 1.0' in metrics


@pytest.mark.slow
@pytest.mark.qemu
def test_lambda_handler_under_avx2_falls_back_to_fp32_and_logs_why(qemu, signed_export):
    code = (
        "import json; from acceptability.serving.lambda_handler import handler; "
        "print(json.dumps(handler({'sentence': 'The cat sat on the mat.'})))"
    )
    env = os.environ | {"COLA_SERVE_MODEL_DIR": str(signed_export), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [qemu, "-cpu", "Haswell", sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["model_version"].startswith("fp32-")
    assert "serving fp32 (self_check_failed)" in done.stderr

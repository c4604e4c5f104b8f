"""ONNX export of a tiny classifier: parity with torch, the int8 gate, the model card, and the torch-free predictor."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
import yaml
from conftest import ROOT

from acceptability.data.encode import load_encoded
from acceptability.export.isa import onnx_logits, session_of
from acceptability.inference.hashing import sha256_file
from acceptability.inference.predictor import ModelFilesError, Predictor, same_length_groups

ONNX_FILES = ("model.onnx", "model.int8.onnx")  # fp32, int8
SENTENCES = ["The cat sat on the mat.", "Cat the mat on sat the.", "John seems to be happy."]


def torch_logits(model_dir, sentences):
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModelForSequenceClassification

    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_padding()
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.inference_mode():
        return np.concatenate(
            [model(input_ids=torch.tensor([tokenizer.encode(s).ids])).logits.numpy() for s in sentences]
        )


def test_onnx_graph_has_the_documented_interface(exported):
    graph = onnx.load(exported / "models/onnx/model.onnx")
    assert max(opset.version for opset in graph.opset_import if opset.domain in ("", "ai.onnx")) >= 17
    inputs = {
        node.name: [d.dim_param or d.dim_value for d in node.type.tensor_type.shape.dim] for node in graph.graph.input
    }
    assert inputs == {"input_ids": ["batch", "sequence"], "attention_mask": ["batch", "sequence"]}
    assert [node.name for node in graph.graph.output] == ["logits"]


def test_model_card_records_labels_hashes_metrics_and_gates(exported):
    card = json.loads((exported / "models/onnx/model_card.json").read_text())
    assert card["labels"] == ["unacceptable", "acceptable"]
    assert card["max_seq_length"] == 64
    for name in ("model.onnx", "model.int8.onnx", "tokenizer.json"):
        assert card["sha256"][name] == sha256_file(exported / "models/onnx" / name)
    assert card["gates"]["fp32_max_abs_logit_diff"] <= 1e-4
    assert set(card["metrics"]) == {"fp32", "int8"}
    assert card["int8"]["servable"] == (card["gates"]["int8_mcc_drop"] <= 0.01)
    assert "int8_servable" not in card["gates"]  # the verdict has one place in the card
    # agreement is the share of validation labels int8 gives as fp32 does, each sentence alone (its own call)
    arrays = load_encoded(exported / "data/tokenized/validation.npz")
    labels = [onnx_logits(session_of(exported / "models/onnx" / name), arrays, 1).argmax(1) for name in ONNX_FILES]
    assert card["gates"]["int8_by_isa"]["native"]["agreement"] == (labels[0] == labels[1]).mean()
    export = yaml.safe_load((exported / "params.yaml").read_text())["export"]
    assert card["int8"] == {
        "fused_before_quantizing": export["fuse"],
        "weight_type": export["weight_type"],
        "per_channel": export["per_channel"],
        "reduce_range": export["reduce_range"],
        "smoothed_nodes": [
            name
            for i in (0, 1)
            for name in (
                f"Attention_{i}",
                f"/model/bert/encoder/layer.{i}/intermediate/dense/MatMul",
                f"/model/bert/encoder/layer.{i}/output/dense/MatMul",
            )
        ],
        "smooth_alpha": export["smooth_alpha"],
        "fp32_nodes": [],
        "servable": card["gates"]["int8_mcc_drop"] <= export["max_int8_mcc_drop"],
    }  # the params that made it
    assert card["calibration"]["temperature"] == 1.0  # this stand-in was never calibrated
    assert set(card["metrics"]["int8"]) == {"mcc", "accuracy", "ece", "ece_uncalibrated"}
    metrics = json.loads((exported / "metrics/export.json").read_text())
    assert metrics["fp32_max_abs_logit_diff"] == card["gates"]["fp32_max_abs_logit_diff"]


def test_predictor_matches_torch_and_names_the_labels(exported):
    predictor = Predictor.load(exported / "models/onnx", "fp32", threads=1)
    expected = torch_logits(exported / "models/model", SENTENCES)
    assert np.abs(predictor.logits(SENTENCES[:1]) - expected[:1]).max() <= 1e-4
    results = predictor.predict(SENTENCES)
    for result, logits in zip(results, expected, strict=True):
        probabilities = result["probabilities"]
        assert set(probabilities) == {"acceptable", "unacceptable"}
        assert probabilities["acceptable"] + probabilities["unacceptable"] == pytest.approx(1.0, abs=1e-9)
        shifted = np.exp(logits - logits.max())
        assert probabilities["acceptable"] == pytest.approx(shifted[1] / shifted.sum(), abs=1e-4)
        assert result["label"] == ("acceptable" if logits[1] > logits[0] else "unacceptable")


def test_int8_predictor_agrees_with_fp32_on_most_sentences(exported):
    fp32 = Predictor.load(exported / "models/onnx", "fp32").probabilities(SENTENCES)
    int8 = Predictor.load(exported / "models/onnx", "int8").probabilities(SENTENCES)
    assert np.abs(fp32 - int8).max() < 0.05


def test_same_length_groups_keep_every_index_once():
    rows = [[1, 2, 3], [4], [5, 6, 7], [8, 9], [10]]
    assert same_length_groups(rows) == [[0, 2], [1, 4], [3]]


def test_a_batch_predicts_what_its_sentences_get_alone(exported):
    """fp32 runs one call per token length (nothing padded), int8 one call per sentence (its activation scales
    are per call); either way the rows go back in input order."""
    batch = SENTENCES + ["Sat.", "The cat sat on the mat."]  # two of one length, one repeated sentence
    for variant in ("fp32", "int8"):
        predictor = Predictor.load(exported / "models/onnx", variant)
        alone = np.concatenate([predictor.logits([sentence]) for sentence in batch])
        together = predictor.logits(batch)
        assert together.shape == (len(batch), 2)
        if variant == "fp32":
            assert np.abs(together - alone).max() <= 1e-5
        else:
            assert np.array_equal(together, alone)  # batch-independent: what the int8 gate measured at batch 1


@pytest.mark.parametrize("bad", [[], [""], ["   "], "a plain string", [3]])
def test_predictor_rejects_empty_or_wrong_input(exported, bad):
    predictor = Predictor.load(exported / "models/onnx", "int8")
    with pytest.raises(ValueError, match="non-empty"):
        predictor.predict(bad)


def copy_export(exported, tmp_path):
    folder = tmp_path / "onnx"
    shutil.copytree(exported / "models/onnx", folder)
    return folder


def test_corrupt_onnx_file_is_a_clear_error(exported, tmp_path):
    folder = copy_export(exported, tmp_path)
    (folder / "model.int8.onnx").write_bytes(b"not an onnx graph")
    card = json.loads((folder / "model_card.json").read_text())
    card["sha256"]["model.int8.onnx"] = sha256_file(folder / "model.int8.onnx")  # the hash agrees, the graph is bad
    (folder / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(ModelFilesError, match=r"model.int8.onnx: ONNX Runtime cannot load it"):
        Predictor.load(folder, "int8")


def test_replaced_file_fails_the_sha256_check(exported, tmp_path):
    folder = copy_export(exported, tmp_path)
    shutil.copyfile(folder / "model.onnx", folder / "model.int8.onnx")
    with pytest.raises(ModelFilesError, match=r"model.int8.onnx: sha256 [0-9a-f]{64} does not match model_card.json"):
        Predictor.load(folder, "int8")


def test_missing_files_are_named(exported, tmp_path):
    folder = copy_export(exported, tmp_path)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(ModelFilesError, match=r"onnx/tokenizer.json is missing"):
        Predictor.load(folder, "fp32")
    (folder / "model_card.json").unlink()
    with pytest.raises(ModelFilesError, match=r"model_card.json is missing: run `dvc repro export` first"):
        Predictor.load(folder, "fp32")


def test_importing_the_predictor_and_loading_int8_needs_no_torch(exported):
    code = (
        "import sys; from acceptability.inference.predictor import Predictor; "
        f"Predictor.load({str(exported / 'models/onnx')!r}, 'int8').predict(['A test.']); "
        "print(sorted(m for m in ('torch', 'lightning', 'transformers') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_parity_gate_failure_stops_the_stage_and_leaves_no_output(exported, tmp_path, monkeypatch):
    shutil.copytree(exported, tmp_path / "project")
    monkeypatch.chdir(tmp_path / "project")
    shutil.rmtree("models/onnx")
    params = yaml.safe_load(open("params.yaml"))
    params["export"]["max_abs_logit_diff"] = 1e-12
    open("params.yaml", "w").write(yaml.safe_dump(params))
    result = subprocess.run([sys.executable, str(ROOT / "stages/export.py")], capture_output=True, text=True)
    assert result.returncode == 2
    assert "error: parity gate: ONNX fp32 logits differ from torch by up to" in result.stderr
    assert "export.max_abs_logit_diff allows 1e-12" in result.stderr
    assert not (tmp_path / "project/models/onnx").exists()
    assert list((tmp_path / "project/models").glob(".onnx.*")) == []


def test_missing_qemu_stops_the_stage_with_what_to_do(exported, tmp_path, monkeypatch):
    shutil.copytree(exported, tmp_path / "project")
    monkeypatch.chdir(tmp_path / "project")
    shutil.rmtree("models/onnx")
    env = {**os.environ, "PATH": os.path.dirname(sys.executable)}
    result = subprocess.run([sys.executable, str(ROOT / "stages/export.py")], capture_output=True, text=True, env=env)
    assert result.returncode == 2
    error = result.stderr.splitlines()[-1]
    assert error.startswith("error: qemu-x86_64 not found: install Debian's qemu-user")
    assert error.endswith("or set export.emulated_isas to [] to measure int8 on this CPU alone")
    env["COLA_QEMU"] = "/no/such/qemu"
    result = subprocess.run([sys.executable, str(ROOT / "stages/export.py")], capture_output=True, text=True, env=env)
    assert result.stderr.splitlines()[-1] == "error: COLA_QEMU='/no/such/qemu' is not an executable file"
    assert not (tmp_path / "project/models/onnx").exists()


def export_with(exported, tmp_path, monkeypatch, **changes) -> subprocess.CompletedProcess:
    """The export stage, in a copy of the exported project without its ONNX, with export params changed."""
    shutil.copytree(exported, tmp_path / "project")
    monkeypatch.chdir(tmp_path / "project")
    shutil.rmtree("models/onnx")
    params = yaml.safe_load(open("params.yaml"))
    params["export"].update(changes)
    open("params.yaml", "w").write(yaml.safe_dump(params))
    return subprocess.run([sys.executable, str(ROOT / "stages/export.py")], capture_output=True, text=True)


def test_fp32_node_patterns_that_name_no_node_are_an_error(exported, tmp_path, monkeypatch):
    # the tiny model has 2 layers
    result = export_with(exported, tmp_path, monkeypatch, fp32_nodes=["layer.7/output/dense/", "layer.8/output/dense/"])
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "error: params.yaml: export.fp32_nodes: none of ['layer.7/output/dense/', 'layer.8/output/dense/'] is in a "
        "node name of the graph int8 quantizes"
    )
    assert not (tmp_path / "project/models/onnx").exists()


def test_missing_model_folder_is_named_instead_of_asking_the_hub(tmp_path):
    from acceptability.core.errors import UserError
    from acceptability.model.module import load_classifier

    with pytest.raises(UserError, match=r"nowhere/model.safetensors is missing: run `dvc repro`"):
        load_classifier(tmp_path / "nowhere")


def test_export_stage_refuses_a_bad_smoothing_pattern_before_exporting(exported, tmp_path, monkeypatch):
    result = export_with(exported, tmp_path, monkeypatch, smooth_nodes=["layer.[0"])
    assert result.returncode == 2
    assert result.stderr.startswith("error: params.yaml: export.smooth_nodes must be a list of regular expressions")
    assert not (tmp_path / "project/models/onnx").exists()


def test_int8_refused_on_this_cpu_is_not_run_under_qemu(tmp_path, monkeypatch):
    """Emulated runs only decide whether int8 may be served: once this CPU's int8 loses too much, they are
    skipped (each takes minutes under qemu), and a qemu that is missing is never asked for."""
    from acceptability.export.build import int8_by_isa
    from acceptability.export.isa import EmulationError, native_isa

    monkeypatch.setenv("PATH", os.path.dirname(sys.executable))
    monkeypatch.delenv("COLA_QEMU", raising=False)
    labels = np.array([0, 1] * 20)
    fp32 = np.eye(2, dtype=np.float32)[labels] * 3  # every label right
    int8 = fp32.copy()
    int8[:8] = fp32[:8][:, ::-1]  # 8 of 40 wrong
    arrays = {"labels": labels, "input_ids": np.arange(40) + 100, "offsets": np.arange(41)}  # a token a row
    logits = {"fp32": fp32, "int8": int8}
    report, found = int8_by_isa(tmp_path / "model.int8.onnx", arrays, logits, ["avx2", "vnni"], max_drop=0.01)
    here = [isa for isa in ("avx2", "vnni") if isa == native_isa()]
    assert list(report) == list(found) == ["native", *here]
    assert report["native"]["mcc_drop"] == pytest.approx(1 - 0.6)  # MCC of 32 right of 40, balanced: 0.6
    assert report["native"]["agreement"] == 0.8
    emulated = [isa for isa in ("avx2", "vnni") if isa not in here]
    with pytest.raises(EmulationError, match="qemu-x86_64 not found"):  # within the allowed drop: qemu is needed
        int8_by_isa(tmp_path / "model.int8.onnx", arrays, logits, emulated, max_drop=0.5)

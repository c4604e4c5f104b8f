"""A real Lightning run on the tiny BERT: reproducible, saved as safetensors, evaluated to the documented schema."""

import json

import pandas as pd
import pytest
import yaml
from stage_runner import run_stage

from acceptability.training import TrainPaths, train


@pytest.fixture
def prepared(in_tmp, params):
    (in_tmp / "params.yaml").write_text(yaml.safe_dump(params))
    run_stage("download.py")
    run_stage("tokenize_splits.py")
    return in_tmp


def train_and_evaluate(folder, params, name: str) -> tuple[dict, dict, pd.DataFrame]:
    paths = TrainPaths(out=folder / name / "model", checkpoints=folder / name / "ckpt",
                       dvclive=folder / name / "live")
    result = train(params, paths)
    run_stage("evaluate.py", "--model", str(paths.out), "--metrics", str(folder / name / "metrics"))
    metrics = json.loads((folder / name / "metrics" / "eval.json").read_text())
    predictions = pd.read_csv(folder / name / "metrics" / "predictions.csv")
    return result, metrics, predictions


def test_same_seed_gives_identical_metrics_and_predictions(prepared, params):
    first, metrics_a, predictions_a = train_and_evaluate(prepared, params, "a")
    second, metrics_b, predictions_b = train_and_evaluate(prepared, params, "b")
    assert first == second
    assert metrics_a == metrics_b
    pd.testing.assert_frame_equal(predictions_a, predictions_b)
    assert first["epochs_run"] == 2 and first["global_steps"] == 12  # 48 rows / batch 8, 2 epochs
    assert metrics_a["val"]["mcc"] == pytest.approx(first["best_val_mcc"], abs=1e-6)


def test_saved_model_and_evaluation_outputs(prepared, params):
    result, metrics, predictions = train_and_evaluate(prepared, params, "run")
    model_dir = prepared / "run" / "model"
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "config.json", "model.safetensors", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json",
        "vocab.txt"]
    config = json.loads((model_dir / "config.json").read_text())
    assert config["id2label"] == {"0": "unacceptable", "1": "acceptable"}

    assert set(metrics) == {"val", "val_in_domain", "val_out_of_domain"}
    assert set(metrics["val"]) == {"mcc", "accuracy", "f1_macro", "precision_macro", "recall_macro", "n"}
    assert metrics["val"]["n"] == 32 and metrics["val_in_domain"]["n"] == 16
    assert metrics["val_out_of_domain"]["n"] == 16
    assert -1 <= metrics["val"]["mcc"] <= 1 and 0 <= metrics["val"]["accuracy"] <= 1

    assert list(predictions.columns) == ["idx", "label", "prediction", "p_acceptable"]
    assert predictions["idx"].tolist() == list(range(32))
    assert ((predictions["p_acceptable"] >= 0.5).astype(int) == predictions["prediction"]).all()
    accuracy = (predictions["label"] == predictions["prediction"]).mean()
    assert metrics["val"]["accuracy"] == pytest.approx(accuracy)
    wrong = pd.read_csv(prepared / "run" / "metrics" / "misclassified.csv")
    assert len(wrong) == int((predictions["label"] != predictions["prediction"]).sum())

    live = json.loads((prepared / "run" / "live" / "metrics.json").read_text())
    assert {"train", "val"} <= set(live)
    assert (prepared / "run" / "live" / "plots" / "metrics" / "val" / "mcc.tsv").is_file()


def test_wandb_offline_run_holds_curves_confusion_matrix_and_mistakes(prepared, params):
    params["tracking"]["wandb"] = "offline"
    result, metrics, predictions = train_and_evaluate(prepared, params, "wandb")
    runs = list((prepared / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    media = runs[0] / "files" / "media" / "table" / "val"
    tables = {path.name.rsplit("_", 2)[0]: json.loads(path.read_text()) for path in media.glob("*.table.json")}
    assert tables["misclassified"]["columns"] == ["idx", "sentence", "label", "prediction", "confidence", "domain"]
    wrong = int((predictions["label"] != predictions["prediction"]).sum())
    assert len(tables["misclassified"]["data"]) == wrong
    confusion = tables["confusion_matrix_table"]
    assert sum(row[-1] for row in confusion["data"]) == 32  # counts over all validation rows

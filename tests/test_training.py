"""A real Lightning run on the tiny BERT: reproducible, saved as safetensors, evaluated to the documented schema."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import ROOT, train_config
from sklearn.metrics import matthews_corrcoef
from stage_runner import run_stage

from acceptability.core.config import ModelShape, TrainConfig
from acceptability.model.training import TrainPaths, train


def train_and_evaluate(folder, params, name: str) -> tuple[dict, dict, pd.DataFrame]:
    run = folder / name
    inputs = [Path("models/pretrained"), Path("data/tokenized"), Path("data/raw")]  # the stages' own, in `folder`
    paths = TrainPaths(*inputs, run / "model", run / "ckpt", run / "live")
    result = train(ModelShape.from_section(params["model"]), TrainConfig.from_section(params["train"]), paths)
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
    # 32 train rows and 2 teacher-labelled copies of each (the default distils): 96 rows / batch 8, 2 epochs
    assert first["epochs_run"] == 2 and first["global_steps"] == 24
    assert metrics_a["val"]["mcc"] == pytest.approx(first["val_mcc"], abs=1e-6)


def test_the_epoch_is_selected_on_the_calibration_rows_never_on_validation(prepared, params):
    """The kept epoch is the first best on calibration/mcc, whatever validation says; both curves are logged."""
    params["train"].update(num_train_epochs=3, early_stopping_patience=3, average_last_epochs=None)
    result, metrics, _ = train_and_evaluate(prepared, params, "select")
    curves = prepared / "select" / "live" / "plots" / "metrics"
    calibration = pd.read_csv(curves / "calibration" / "mcc.tsv", sep="\t")["mcc"].tolist()
    validation = pd.read_csv(curves / "val" / "mcc.tsv", sep="\t")["mcc"].tolist()
    assert len(calibration) == len(validation) == 3
    best = calibration.index(max(calibration))
    assert result["selected_on"] == "calibration/mcc" and result["selected_epoch"] == best + 1
    assert result["calibration_mcc"] == pytest.approx(calibration[best])
    assert metrics["val"]["mcc"] == pytest.approx(validation[best], abs=1e-6)


def test_saved_model_and_evaluation_outputs(prepared, params):
    result, metrics, predictions = train_and_evaluate(prepared, params, "run")
    model_dir = prepared / "run" / "model"
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "config.json",
        "model.safetensors",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
    ]
    config = json.loads((model_dir / "config.json").read_text())
    assert config["id2label"] == {"0": "unacceptable", "1": "acceptable"}
    # fitted on the 16 calibration rows after training, saved with the model, reported by evaluate
    assert config["calibration_temperature"] == result["calibration_temperature"] > 0
    assert metrics["calibration"]["temperature"] == config["calibration_temperature"]
    assert metrics["calibration"]["mcc_uncalibrated"] == metrics["val"]["mcc"]
    reliability = pd.read_csv(prepared / "run" / "metrics" / "reliability" / "calibrated.csv")
    assert reliability["n"].sum() == 32 and len(reliability) == 10

    assert set(metrics) == {"val", "val_in_domain", "val_out_of_domain", "calibration"}
    assert set(metrics["val"]) == {"mcc", "accuracy", "f1_macro", "precision_macro", "recall_macro", "n"}
    assert metrics["val"]["n"] == 32 and metrics["val_in_domain"]["n"] == 16
    assert metrics["val_out_of_domain"]["n"] == 16

    assert list(predictions.columns) == ["idx", "label", "prediction", "p_acceptable"]
    assert predictions["idx"].tolist() == list(range(32))
    assert ((predictions["p_acceptable"] >= 0.5).astype(int) == predictions["prediction"]).all()
    # the reported scores are those of the written predictions (scikit-learn's MCC, not the project's)
    labels, predicted = predictions["label"], predictions["prediction"]
    assert metrics["val"]["mcc"] == pytest.approx(matthews_corrcoef(labels, predicted), abs=1e-9)
    assert metrics["val"]["accuracy"] == pytest.approx((labels == predicted).mean(), abs=1e-9)
    accuracy = (predictions["label"] == predictions["prediction"]).mean()
    assert metrics["val"]["accuracy"] == pytest.approx(accuracy)
    wrong = pd.read_csv(prepared / "run" / "metrics" / "misclassified.csv")
    assert len(wrong) == int((predictions["label"] != predictions["prediction"]).sum())

    live = json.loads((prepared / "run" / "live" / "metrics.json").read_text())
    assert {"train", "val"} <= set(live)
    assert (prepared / "run" / "live" / "plots" / "metrics" / "val" / "mcc.tsv").is_file()


def test_wandb_offline_run_holds_curves_confusion_matrix_and_mistakes(prepared, params, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
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


def test_train_benchmark_writes_the_documented_report(prepared):
    out = prepared / "metrics" / "train_benchmark.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "acceptability.ops.train_benchmark",
            "--steps",
            "3",
            "--warmup-steps",
            "1",
            "--out",
            str(out),
        ],
        cwd=prepared,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert {"pipeline_sps", "plain_loop_sps", "ratio", "steps", "batch_size"} <= set(report)
    assert report["steps"] == 3 and report["batch_size"] == 8
    # tests never assert speed: what was timed is the variants asked for (the default two), each under its name
    assert report["variants_sps"] == {"pipeline": report["pipeline_sps"], "plain_loop": report["plain_loop_sps"]}


@pytest.mark.parametrize("pooling", ["mean", "max"])
def test_token_pooling_is_saved_and_exported_within_the_parity_gate(prepared, params, pooling):
    params["model"]["pooling"] = pooling
    (prepared / "params.yaml").write_text(yaml.safe_dump(params))
    result, metrics, _ = train_and_evaluate(prepared, params, pooling)
    model_dir = prepared / pooling / "model"
    assert json.loads((model_dir / "config.json").read_text())["classifier_pooling"] == pooling
    from safetensors import safe_open

    with safe_open(model_dir / "model.safetensors", "pt") as weights:
        assert not any("pooler" in name for name in weights.keys())  # noqa: SIM118 (safe_open has no __iter__)
    assert metrics["val"]["mcc"] == pytest.approx(result["val_mcc"], abs=1e-6)
    run_stage(
        "export.py",
        "--model",
        str(model_dir),
        "--out",
        str(prepared / pooling / "onnx"),
        "--metrics",
        str(prepared / pooling / "export.json"),
    )
    card = json.loads((prepared / pooling / "onnx" / "model_card.json").read_text())
    assert card["gates"]["fp32_max_abs_logit_diff"] <= 1e-4


def test_layerwise_decay_and_head_learning_rate(tiny_model_dir):
    from acceptability.model.module import load_classifier, parameter_groups

    model = load_classifier(tiny_model_dir).model
    cfg = train_config(learning_rate=1e-4, head_learning_rate=1e-3, layerwise_lr_decay=0.5, weight_decay=0.01)
    groups = parameter_groups(model, cfg, num_layers=2)
    rate_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert rate_of[id(named["classifier.weight"])] == 1e-3
    assert rate_of[id(named["bert.encoder.layer.1.output.dense.weight"])] == pytest.approx(1e-4 * 0.5)
    assert rate_of[id(named["bert.encoder.layer.0.output.dense.weight"])] == pytest.approx(1e-4 * 0.25)
    assert rate_of[id(named["bert.embeddings.word_embeddings.weight"])] == pytest.approx(1e-4 * 0.125)
    assert len(rate_of) == len(named)  # every parameter is in exactly one group
    no_decay = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    assert id(named["bert.encoder.layer.0.output.LayerNorm.weight"]) in no_decay


def test_gradient_clipping_reaches_the_trainer(tmp_path, params):
    from acceptability.model.training import build_trainer

    clipped = TrainConfig.from_section({**params["train"], "gradient_clip_val": 0.5})
    paths = TrainPaths(*[tmp_path] * 6)
    trainer, _ = build_trainer(clipped, paths, [])
    assert trainer.gradient_clip_val == 0.5 and trainer.gradient_clip_algorithm == "norm"
    trainer, _ = build_trainer(TrainConfig.from_section(params["train"]), paths, [])
    assert trainer.gradient_clip_val is None


def test_kept_layers_and_balanced_smoothed_clipped_loss_carry_through_training_and_export(prepared, params):
    params["model"]["num_layers"] = 1
    params["train"]["class_weights"] = "balanced"
    params["train"]["label_smoothing"] = 0.1
    params["train"]["gradient_clip_val"] = 1.0
    (prepared / "params.yaml").write_text(yaml.safe_dump(params))
    result, metrics, _ = train_and_evaluate(prepared, params, "short")
    model_dir = prepared / "short" / "model"
    assert json.loads((model_dir / "config.json").read_text())["num_hidden_layers"] == 1
    from safetensors import safe_open

    with safe_open(model_dir / "model.safetensors", "pt") as weights:
        names = list(weights.keys())
    assert any("encoder.layer.0." in name for name in names)
    assert not any("encoder.layer.1." in name for name in names)
    assert metrics["val"]["mcc"] == pytest.approx(result["val_mcc"], abs=1e-6)
    run_stage(
        "export.py",
        "--model",
        str(model_dir),
        "--out",
        str(prepared / "short" / "onnx"),
        "--metrics",
        str(prepared / "short" / "export.json"),
    )
    card = json.loads((prepared / "short" / "onnx" / "model_card.json").read_text())
    assert card["gates"]["fp32_max_abs_logit_diff"] <= 1e-4


def test_frozen_embeddings_and_layers_keep_their_pretrained_weights(prepared, params):
    from safetensors.torch import load_file

    from acceptability.core.errors import UserError
    from acceptability.model.module import AcceptabilityClassifier

    params["train"].update(freeze_embeddings=True, frozen_layers=1)
    (prepared / "params.yaml").write_text(yaml.safe_dump(params))
    train_and_evaluate(prepared, params, "frozen")
    before = load_file(prepared / "models/pretrained/model.safetensors")
    saved = load_file(prepared / "frozen/model/model.safetensors")
    after = {name.removeprefix("bert."): weight for name, weight in saved.items()}
    kept = {name for name in before if name.startswith(("embeddings.", "encoder.layer.0."))}
    assert kept and all(after[name].equal(before[name]) for name in kept)
    trained = [name for name in before if name.startswith("encoder.layer.1.")]
    assert trained and not any(after[name].equal(before[name]) for name in trained)
    with pytest.raises(UserError, match=r"frozen_layers must be at most the model's 2 layers, found 3"):
        shape = ModelShape("bert_tiny", "cls", None)
        AcceptabilityClassifier(prepared / "models/pretrained", shape, train_config(frozen_layers=3), None)


def test_top_layers_restart_from_bert_initialisation(tiny_model_dir):
    from acceptability.core.errors import UserError
    from acceptability.model.module import AcceptabilityClassifier

    shape = ModelShape("bert_tiny", "cls", None)
    pretrained = AcceptabilityClassifier(tiny_model_dir, shape, train_config(), None).classifier.model
    restarted = AcceptabilityClassifier(tiny_model_dir, shape, train_config(reinit_top_layers=1), None).classifier.model
    layer_0 = (model.bert.encoder.layer[0].parameters() for model in (pretrained, restarted))
    assert all(a.equal(b) for a, b in zip(*layer_0, strict=True))
    top = dict(restarted.bert.encoder.layer[1].named_parameters())
    norms = [weight for name, weight in top.items() if "LayerNorm" in name]
    assert len(norms) == 4 and all(w.eq(1).all() or w.eq(0).all() for w in norms)
    linear = [weight for name, weight in top.items() if name.endswith("dense.weight")]
    assert len(linear) == 3 and all(abs(w.std().item() - 0.02) < 0.004 for w in linear)
    assert all(top[name].eq(0).all() for name in top if name.endswith("dense.bias"))
    with pytest.raises(UserError, match=r"reinit_top_layers must be at most the model's 2 layers, found 3"):
        AcceptabilityClassifier(tiny_model_dir, shape, train_config(reinit_top_layers=3), None)


def test_the_weights_average_is_validated_selected_and_saved(prepared, params):
    """With ema_decay 0 the average is the weights themselves: the plain run, bit for bit. With 0.9 the saved model
    is the average, and it is the one validation scored at the selected epoch."""
    from safetensors.torch import load_file

    runs = {}
    params["train"]["average_last_epochs"] = None
    for name, decay in (("plain", None), ("ema0", 0.0), ("ema", 0.9)):
        params["train"]["ema_decay"] = decay
        (prepared / "params.yaml").write_text(yaml.safe_dump(params))
        result, metrics, _ = train_and_evaluate(prepared, params, name)
        runs[name] = load_file(prepared / name / "model/model.safetensors"), result, metrics
    plain, same, averaged = runs["plain"][0], runs["ema0"][0], runs["ema"][0]
    assert all(plain[key].equal(same[key]) for key in plain)
    assert not all(plain[key].equal(averaged[key]) for key in plain)
    _, result, metrics = runs["ema"]
    assert metrics["val"]["mcc"] == pytest.approx(result["val_mcc"], abs=1e-6)


def test_the_tail_average_is_kept_without_choosing_an_epoch(prepared, params):
    """average_last_epochs: the mean of every step's weights over the last epochs is validated and saved, and the run
    goes to its last epoch with no epoch chosen on the calibration rows."""
    from safetensors.torch import load_file

    runs = {}
    for name, last in (("plain", None), ("from1", 2), ("from2", 1)):  # of 2 epochs
        params["train"]["average_last_epochs"] = last
        (prepared / "params.yaml").write_text(yaml.safe_dump(params))
        result, metrics, _ = train_and_evaluate(prepared, params, name)
        runs[name] = load_file(prepared / name / "model/model.safetensors"), result, metrics
    weights = {name: run[0] for name, run in runs.items()}
    for one, other in (("plain", "from1"), ("plain", "from2"), ("from1", "from2")):
        assert not all(weights[one][key].equal(weights[other][key]) for key in weights[one])
    _, result, metrics = runs["from2"]
    assert result["selected_epoch"] == 2 and result["selected_on"] == "the mean of the weights of epoch 2"
    assert metrics["val"]["mcc"] == pytest.approx(result["val_mcc"], abs=1e-6)


def test_the_tail_average_must_fit_the_run(in_tmp, params):
    from acceptability.core.errors import UserError

    assert train_config(average_last_epochs=2, num_train_epochs=4).first_averaged_epoch() == 3
    assert train_config(average_last_epochs=5, num_train_epochs=4).first_averaged_epoch() == 1  # every epoch
    assert train_config(average_last_epochs=None).first_averaged_epoch() is None
    with pytest.raises(UserError, match="set one of train.average_last_epochs and train.ema_decay, not both"):
        train_config(average_last_epochs=2, ema_decay=0.9)


def test_balanced_class_weights_and_their_errors(tiny_model_dir):
    import numpy as np

    from acceptability.core.errors import UserError
    from acceptability.model.module import AcceptabilityClassifier, balanced_class_weights, load_classifier

    assert balanced_class_weights(np.array([1, 1, 1, 0])) == [2.0, pytest.approx(2 / 3)]
    with pytest.raises(UserError, match=r"every class in the train split; counts \[0, 3\]"):
        balanced_class_weights(np.array([1, 1, 1]))
    with pytest.raises(UserError, match=r"model.num_layers must be null or 1..2 .* found 3"):
        load_classifier(tiny_model_dir, num_layers=3)
    module = AcceptabilityClassifier(tiny_model_dir, ModelShape("bert_tiny", "cls", None), train_config(), [2.0, 0.5])
    assert module.class_weights.tolist() == [2.0, 0.5]
    assert "class_weights" not in module.state_dict()  # not saved with the model: a training-only setting


def test_bad_class_weights_and_layer_count_fail_before_training(in_tmp, params):
    from acceptability.core.errors import UserError

    with pytest.raises(UserError, match="train.class_weights must be one of null, balanced, found 'inverse'"):
        train_config(class_weights="inverse")
    with pytest.raises(UserError, match=r"train.label_smoothing must be in \[0, 1\), found 1.0"):
        train_config(label_smoothing=1.0)
    with pytest.raises(UserError, match="model.pooling must be one of cls, mean, max, found 'sum'"):
        ModelShape.from_section({**params["model"], "pooling": "sum"})
    with pytest.raises(UserError, match="model.num_layers must be a positive integer, found 0"):
        ModelShape.from_section({**params["model"], "num_layers": 0})


def test_the_running_mean_is_torchs_swa_bit_for_bit_and_leaves_frozen_weights_alone():
    """The in-place mean must give the committed run's weights exactly: compare it with torch's own SWA update."""
    import torch
    from torch.optim.swa_utils import AveragedModel

    from acceptability.model.averaging import weight_averaging

    torch.manual_seed(0)
    (callback,) = weight_averaging(train_config(average_last_epochs=2, num_train_epochs=4))
    live = torch.nn.Sequential(torch.nn.Embedding(50, 8), torch.nn.Linear(8, 2))
    live[0].weight.requires_grad_(False)
    callback.note_frozen(live)  # as its setup does
    ours, torchs = AveragedModel(live, **callback._kwargs), AveragedModel(live)
    for _ in range(5):
        with torch.no_grad():
            live[1].weight.add_(torch.randn_like(live[1].weight))
        ours.update_parameters(live)
        torchs.update_parameters(live)
    assert all(a.equal(b) for a, b in zip(ours.parameters(), torchs.parameters(), strict=True))
    assert not ours.module[1].weight.equal(live[1].weight)  # a mean, not the last weights

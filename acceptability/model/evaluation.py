"""evaluate(model_dir, ...) -> metrics: score a saved model on the validation split, overall and per domain."""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from acceptability.core.atomic import atomic_path, write_json
from acceptability.core.errors import UserError
from acceptability.core.scores import predicted_labels, scores
from acceptability.data.cola import read_split


def score_predictions(frame: pd.DataFrame, p_acceptable: np.ndarray) -> dict:
    """metrics/eval.json's content: `val` in full, and MCC per domain."""
    predictions = predicted_labels(p_acceptable)
    result = {"val": scores(frame["label"], predictions)}
    for domain, key in (("in", "val_in_domain"), ("out", "val_out_of_domain")):
        mask = (frame["domain"] == domain).to_numpy()
        domain_scores = scores(frame["label"][mask], predictions[mask])
        result[key] = {"mcc": domain_scores["mcc"], "accuracy": domain_scores["accuracy"], "n": domain_scores["n"]}
    return result


def calibration_outputs(frame: pd.DataFrame, logits: np.ndarray, temperature: float, metrics_dir: Path) -> dict:
    """ECE before and after the model's temperature, a reliability table of each for the DVC plot, and the check
    that calibration moved no decision (MCC the same both ways)."""
    from acceptability.inference.calibration import ece, probabilities, reliability

    labels = frame["label"].to_numpy()
    variants = {"calibrated": probabilities(logits), "uncalibrated": probabilities(logits * temperature)}
    for name, probs in variants.items():
        with atomic_path(metrics_dir / "reliability" / f"{name}.csv") as tmp:
            pd.DataFrame(reliability(probs, labels)).to_csv(tmp, index=False)
    mcc = {name: scores(labels, predicted_labels(probs[:, 1]))["mcc"] for name, probs in variants.items()}
    if mcc["calibrated"] != mcc["uncalibrated"]:
        raise UserError(f"calibration changed the decisions: val MCC {mcc['uncalibrated']} -> {mcc['calibrated']}")
    return {
        "temperature": temperature,
        "ece": ece(variants["calibrated"], labels),
        "ece_uncalibrated": ece(variants["uncalibrated"], labels),
        "mcc_uncalibrated": mcc["uncalibrated"],
    }


def misclassified(frame: pd.DataFrame, p_acceptable: np.ndarray) -> pd.DataFrame:
    """The validation rows the model gets wrong, most confident mistakes first."""
    predictions = predicted_labels(p_acceptable)
    confidence = np.where(predictions == 1, p_acceptable, 1 - p_acceptable)
    wrong = frame.assign(prediction=predictions, confidence=confidence.round(4))
    wrong = wrong[wrong["prediction"] != wrong["label"]]
    return wrong.sort_values("confidence", ascending=False)[
        ["idx", "sentence", "label", "prediction", "confidence", "domain"]
    ]


def write_outputs(frame: pd.DataFrame, p_acceptable: np.ndarray, metrics_dir: Path, calibration=None) -> dict:
    result = score_predictions(frame, p_acceptable)
    if calibration is not None:
        result["calibration"] = calibration
    write_json(metrics_dir / "eval.json", result)
    predictions = pd.DataFrame(
        {
            "idx": frame["idx"],
            "label": frame["label"],
            "prediction": predicted_labels(p_acceptable),
            "p_acceptable": p_acceptable.round(6),
        }
    )
    with atomic_path(metrics_dir / "predictions.csv") as tmp:
        predictions.to_csv(tmp, index=False)
    with atomic_path(metrics_dir / "misclassified.csv") as tmp:
        misclassified(frame, p_acceptable).to_csv(tmp, index=False)
    return result


def evaluate(model_dir: Path, tokenized: Path, raw: Path, metrics_dir: Path, batch_size: int) -> dict:
    """Predict every validation sentence with the saved model and write eval.json, predictions and mistakes."""
    from acceptability.inference.calibration import probabilities
    from acceptability.model.datamodule import split_loader
    from acceptability.model.module import load_classifier
    from acceptability.model.predict import predict_logits

    frame = read_split(raw / "validation.csv")
    meta = json.loads((tokenized / "meta.json").read_text())
    loader = split_loader(tokenized / "validation.npz", meta["pad_token_id"], batch_size)
    if not np.array_equal(loader.dataset.arrays["idx"], frame["idx"].to_numpy()):
        raise UserError(f"{tokenized}/validation.npz and {raw}/validation.csv disagree on idx: re-run `dvc repro`")
    model = load_classifier(model_dir)
    logits = predict_logits(model, loader, desc="evaluate")
    (metrics_dir / "reliability").mkdir(parents=True, exist_ok=True)
    calibration = calibration_outputs(frame, logits, model.temperature, metrics_dir)
    return write_outputs(frame, probabilities(logits)[:, 1], metrics_dir, calibration)

"""The model card (models/onnx/model_card.json): its one owner. Writing, reading, file verification and the
servable rule live here; export, the predictor, serving and promote use them. Torch-free."""

import json
from dataclasses import asdict
from pathlib import Path

from acceptability import LABELS
from acceptability.inference.hashing import sha256_file

CARD = "model_card.json"
VARIANT_FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
REQUIRED = ("labels", "max_seq_length", "sha256")
# The bucket bounds of the API's drift histograms, and of the baseline the card carries for them.
CONFIDENCE_BUCKETS = (0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
TOKEN_BUCKETS = (8, 12, 16, 24, 32, 48, 64)


class ModelFilesError(ValueError):
    """A missing, corrupt or unverified file in the ONNX model folder."""


def build_card(folder: Path, export_cfg, max_len: int, model_name: str, results: dict) -> dict:
    """The card for an export folder holding the VARIANT_FILES and tokenizer.json; export_cfg: the ExportConfig
    (acceptability.core.config, not imported: images carry no params code); results: export_onnx's metrics, gates
    (int8_servable becomes the card's int8.servable, its one place), golden set, drift baselines and calibration."""
    gates = dict(results["gates"])
    servable = gates.pop("int8_servable")
    return {
        "labels": list(LABELS),
        "max_seq_length": max_len,
        "inputs": ["input_ids", "attention_mask"],
        "output": "logits",  # already divided by the calibration temperature
        "opset": export_cfg.opset,
        "calibration": results["calibration"],
        "int8": {
            "fused_before_quantizing": export_cfg.fuse,
            "weight_type": export_cfg.weight_type,
            "per_channel": export_cfg.per_channel,
            "reduce_range": export_cfg.reduce_range,
            "smoothed_nodes": results["smoothed_nodes"],
            "smooth_alpha": export_cfg.smooth_alpha,
            "fp32_nodes": results["fp32_nodes"],
            "servable": servable,
        },
        "params": {"export": asdict(export_cfg), "model": model_name},
        "metrics": results["metrics"],
        "gates": gates,
        "golden": results["golden"],
        "drift_baseline": results["drift_baseline"],
        "sha256": {name: sha256_file(folder / name) for name in [*VARIANT_FILES.values(), "tokenizer.json"]},
    }


def variant_baseline(card: dict, variant: str) -> dict:
    """The card's validation drift baseline for `variant`, what the live and the offline monitor compare with."""
    baseline = card.get("drift_baseline", {}).get(variant)
    if baseline is None:  # a card from an export before baselines
        raise ModelFilesError(f"the model card has no drift baseline for {variant}: re-run `dvc repro export`")
    return baseline


def cumulative_shares(values: list[float], bounds: tuple) -> dict[str, float]:
    """Prometheus-style cumulative histogram shares: for each bound, the share of values <= it ("+Inf": 1). The
    keys are written as the `le` labels of prometheus_client ("8.0", "0.95"), so a rule can join on them."""
    shares = {str(float(bound)): sum(value <= bound for value in values) / len(values) for bound in bounds}
    return shares | {"+Inf": 1.0}


def drift_baseline(labels: list[int], confidence: list[float], token_lengths: list[int]) -> dict:
    """What the API's live drift series are compared with, on the validation set: the share of each predicted label
    (label ids), the mean and distribution of the confidence (the larger probability) and of the length in tokens."""
    n = len(labels)
    return {
        "sentences": n,
        "label_share": {name: sum(label == i for label in labels) / n for i, name in enumerate(LABELS)},
        "confidence": {"mean": sum(confidence) / n, "le": cumulative_shares(confidence, CONFIDENCE_BUCKETS)},
        "tokens": {"mean": sum(token_lengths) / n, "le": cumulative_shares(token_lengths, TOKEN_BUCKETS)},
    }


def write_card(folder: Path, card: dict) -> None:
    (folder / CARD).write_text(json.dumps(card, indent=2) + "\n")


def read_card(folder: Path) -> dict:
    path = Path(folder) / CARD
    if not path.is_file():
        raise ModelFilesError(f"{path} is missing: run `dvc repro export` first")
    try:
        card = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ModelFilesError(f"{path} is not valid JSON: {err}") from None
    for key in REQUIRED:
        if key not in card:
            raise ModelFilesError(f"{path}: field {key!r} is missing")
    return card


def verified(folder: Path, card: dict, name: str) -> Path:
    path = Path(folder) / name
    if not path.is_file():
        raise ModelFilesError(f"{path} is missing")
    expected = card["sha256"].get(name)
    found = sha256_file(path)
    if expected != found:
        raise ModelFilesError(
            f"{path}: sha256 {found} does not match {CARD} ({expected}); the file is corrupt or was replaced"
        )
    return path

"""Which variant to serve on this CPU. int8's answers depend on the CPU's integer instructions
(acceptability/export/isa.py), so the export gate, measured elsewhere, is not enough: at start-up the server runs
the card's golden set (sentences and each variant's reference logits) and serves int8 only if it reproduces them
within the card's tolerance."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from acceptability.inference.predictor import Predictor

# Why a variant is served: the `reason` label of cola_served_variant, a fixed set.
REASONS = ("self_check_passed", "self_check_failed", "export_gate", "no_golden_set", "requested")


@dataclass(frozen=True)
class Choice:
    variant: str
    reason: str  # one of REASONS
    detail: str  # one sentence for the log and /readyz
    max_abs_diff: dict  # variant -> largest |logit - reference| over the golden set, for each variant checked
    tolerance: float | None


def golden_diff(predictor: Predictor, golden: dict) -> float:
    """The largest |logit - the card's reference| over the golden sentences, for the predictor's variant."""
    found = predictor.logits(golden["sentences"])
    return float(np.abs(found - np.asarray(golden["logits"][predictor.variant], dtype=np.float32)).max())


def choose(folder: str | Path, card: dict, wanted: str = "auto", threads: int = 0) -> tuple[Predictor, Choice]:
    """The predictor to serve and why. wanted: auto, or a variant that is served whatever the check says."""
    golden = card.get("golden")
    load = lambda variant: Predictor.load(folder, variant, threads=threads, card=card)  # noqa: E731
    if wanted != "auto":
        predictor = load(wanted)
        diffs = {wanted: golden_diff(predictor, golden)} if golden else {}
        return predictor, Choice(wanted, "requested", f"{wanted} was asked for", diffs, golden and golden["tolerance"])
    if not card.get("int8", {}).get("servable"):
        drop = card.get("gates", {}).get("int8_mcc_drop")
        detail = f"the export gate marked int8 not servable (largest MCC drop {drop})"
        return load("fp32"), Choice("fp32", "export_gate", detail, {}, golden and golden["tolerance"])
    if not golden:
        detail = "the card has no golden set to check int8 on this CPU: re-run `dvc repro export`"
        return load("fp32"), Choice("fp32", "no_golden_set", detail, {}, None)
    int8, tolerance = load("int8"), float(golden["tolerance"])
    diff = golden_diff(int8, golden)
    n = len(golden["sentences"])
    if diff <= tolerance:
        detail = f"int8 reproduces the card's {n} golden logits on this CPU (max diff {diff:.2e} <= {tolerance})"
        return int8, Choice("int8", "self_check_passed", detail, {"int8": diff}, tolerance)
    fp32 = load("fp32")
    diffs = {"int8": diff, "fp32": golden_diff(fp32, golden)}
    detail = (
        f"int8 differs from the card's {n} golden logits by up to {diff:.3g} > {tolerance} on this CPU "
        "(its integer kernels round differently): serving fp32"
    )
    return fp32, Choice("fp32", "self_check_failed", detail, diffs, tolerance)

"""Export a saved classifier to ONNX (fp32), fuse its graph for ONNX Runtime, and quantize it to int8."""

import json
import logging
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from acceptability.core.config import ExportConfig
from acceptability.model.module import load_classifier

INPUTS = ["input_ids", "attention_mask"]  # token_type_ids is all zeros for one sentence: the graph keeps it constant
OUTPUT = "logits"


def export_fp32(model_dir: Path, out: Path, opset: int) -> torch.nn.Module:
    """torch.onnx.export with dynamic batch and sequence axes; returns the torch model for parity checks."""
    # Eager attention traces to the pattern ONNX Runtime fuses into its Attention op (SDPA's does not fuse).
    model = load_classifier(model_dir, attn_implementation="eager").eval()
    example = (torch.ones((2, 8), dtype=torch.long), torch.ones((2, 8), dtype=torch.long))
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUTS} | {OUTPUT: {0: "batch"}}
    # The TorchScript exporter gives the graph that ONNX Runtime's BERT fusions recognise. Its two warnings are
    # about graphs that fit only the traced shapes or negative indices; the export stage's parity gate runs the graph
    # on every validation sentence at several batch sizes, so a real case would fail there, not pass silently.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Exporting aten::index operator of advanced indexing")
        torch.onnx.export(
            model,
            example,
            str(out),
            input_names=INPUTS,
            output_names=[OUTPUT],
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    return model


class NoPreprocessingHint(logging.Filter):
    """quantize_dynamic suggests ONNX Runtime's pre-processing on every call; fuse() above is that step for BERT."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "consider to run pre-processing before quantization" not in record.getMessage()


def fuse(fp32: Path, out: Path, num_heads: int, hidden_size: int) -> None:
    """ONNX Runtime's transformer optimiser: attention, layer-norm and GELU fusions (still fp32)."""
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(str(fp32), model_type="bert", num_heads=num_heads, hidden_size=hidden_size, opt_level=1)
    optimized.save_model_to_file(str(out))


def fp32_nodes(graph: Path, parts: list) -> list[str]:
    """The names of the graph's nodes that contain one of `parts`. Parts that name no node are reported (a model with
    fewer layers has no layer.1), and an error when none names any (a typo, or another architecture's names)."""
    from acceptability.core.errors import UserError

    names = [node.name for node in onnx.load(str(graph), load_external_data=False).graph.node]
    unmatched = [part for part in parts if not any(part in name for name in names)]
    if parts and len(unmatched) == len(parts):
        raise UserError(
            f"params.yaml: export.fp32_nodes: none of {parts} is in a node name of the graph int8 quantizes"
        )
    if unmatched:
        print(f"export.fp32_nodes: {unmatched} name no node of this model; int8 keeps the others in fp32")
    return [name for name in names if any(part in name for part in parts)]


def quantize_int8(source: Path, out: Path, cfg: ExportConfig) -> list[str]:
    """Dynamic int8 quantization of the weights (activations quantized on the fly, as uint8), but for the nodes of
    cfg.fp32_nodes, which it returns.

    cfg.weight_type picks signed or unsigned 8-bit weights, cfg.reduce_range 7-bit ones. Which recipe holds on which
    CPU is measured, not assumed: docs/decisions.md, "int8 on any CPU".
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    kept = fp32_nodes(source, cfg.fp32_nodes)

    with tempfile.TemporaryDirectory() as tmp:  # quantize_dynamic writes helper files beside its input
        staged = Path(tmp) / "model.onnx"
        shutil.copyfile(source, staged)
        # Fused contrib ops (BiasGelu, SkipLayerNorm) defeat ONNX shape inference: tell it the tensors are float.
        hint = NoPreprocessingHint()
        logging.getLogger().addFilter(hint)
        try:
            quantize_dynamic(
                str(staged),
                str(out),
                weight_type=QuantType.QUInt8 if cfg.weight_type == "uint8" else QuantType.QInt8,
                per_channel=cfg.per_channel,
                reduce_range=cfg.reduce_range,
                nodes_to_exclude=kept,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
        finally:
            logging.getLogger().removeFilter(hint)
    return kept


def drift_baseline_of(logits: np.ndarray, token_lengths: np.ndarray) -> dict:
    from acceptability.inference.calibration import probabilities
    from acceptability.inference.card import drift_baseline

    probs = probabilities(logits)
    return drift_baseline(logits.argmax(axis=1).tolist(), probs.max(axis=1).tolist(), token_lengths.tolist())


def calibration_report(labels: np.ndarray, logits: np.ndarray, temperature: float) -> dict:
    """ECE of one variant's (already calibrated) logits, and of the same logits before calibration."""
    from acceptability.inference.calibration import ece, probabilities

    return {
        "ece": ece(probabilities(logits), labels),
        "ece_uncalibrated": ece(probabilities(logits * temperature), labels),
    }


def build_variants(model_dir: Path, folder: Path, cfg: ExportConfig, train: dict) -> tuple[torch.nn.Module, dict]:
    """model.onnx (fp32), model.int8.onnx and tokenizer.json into folder, int8 smoothed on `train`'s rows (the
    tokenized train split); returns the torch model and the nodes int8 smoothed and kept in fp32."""
    from acceptability.export.smooth import smooth
    from acceptability.inference.card import VARIANT_FILES

    config = json.loads((model_dir / "config.json").read_text())
    fp32 = folder / VARIANT_FILES["fp32"]
    model = export_fp32(model_dir, fp32, cfg.opset)
    shutil.copyfile(model_dir / "tokenizer.json", folder / "tokenizer.json")
    with tempfile.TemporaryDirectory() as tmp:
        to_quantize = fp32
        if cfg.fuse:
            to_quantize = Path(tmp) / "fused.onnx"
            fuse(fp32, to_quantize, config["num_attention_heads"], config["hidden_size"])
        smoothed = []
        if cfg.smooth_nodes:
            smoothed = smooth(
                to_quantize, Path(tmp) / "smoothed.onnx", cfg.smooth_nodes, cfg.smooth_alpha, train, cfg.smooth_rows
            )
            to_quantize = Path(tmp) / "smoothed.onnx"
        kept = quantize_int8(to_quantize, folder / VARIANT_FILES["int8"], cfg)
    return model, {"smoothed_nodes": smoothed, "fp32_nodes": kept}


def int8_by_isa(int8: Path, arrays: dict, logits: dict, isas: list, max_drop: float) -> tuple[dict, dict]:
    """int8's MCC, drop from fp32 and label agreement with fp32: on this CPU ("native", logits["int8"]) and on each
    instruction set of `isas`, under qemu unless this CPU is one (acceptability/export/isa.py: bit for bit the same).
    When int8 already loses more than `max_drop` here, it is refused whatever other CPUs give: the emulated runs
    (minutes each) are skipped. Returns (that report, the logits of each)."""
    from acceptability.core.machine import cpu_name
    from acceptability.export.isa import EMULATED_CPU, emulated_logits, native_isa
    from acceptability.export.parity import variant_metrics

    labels, here = arrays["labels"], native_isa()
    fp32_mcc, fp32_labels = variant_metrics(labels, logits["fp32"])["mcc"], logits["fp32"].argmax(1)

    def row(cpu: str, values) -> dict:
        mcc = variant_metrics(labels, values)["mcc"]
        agreement = float((values.argmax(1) == fp32_labels).mean())
        return {"cpu": cpu, "mcc": mcc, "mcc_drop": fp32_mcc - mcc, "agreement": agreement}

    found, report = {"native": logits["int8"]}, {"native": row(cpu_name(), logits["int8"])}
    refused = report["native"]["mcc_drop"] > max_drop
    for isa in isas:
        if isa == here:
            found[isa], report[isa] = logits["int8"], {**report["native"], "cpu": f"{cpu_name()} (this CPU)"}
        elif refused:
            print(
                f"int8 loses {report['native']['mcc_drop']:.4f} MCC on this CPU, over the {max_drop} allowed: "
                f"refused, so it is not run under qemu as {EMULATED_CPU[isa]} ({isa})",
                flush=True,
            )
        else:
            print(f"int8 on every validation sentence under qemu as {EMULATED_CPU[isa]} ({isa}): minutes", flush=True)
            started = time.monotonic()
            found[isa] = emulated_logits(int8, arrays, isa)
            report[isa] = row(f"qemu-x86_64 -cpu {EMULATED_CPU[isa]}", found[isa])
            print(f"{isa} done in {time.monotonic() - started:.0f} s", flush=True)
    return report, found


def golden_set(sentences: list[str], logits: dict, cfg: ExportConfig) -> dict:
    """Evenly spaced validation sentences and each variant's batch-1 logits for them: what a server re-computes at
    start-up (acceptability/inference/selfcheck.py)."""
    picked = np.linspace(0, len(sentences) - 1, min(cfg.golden_sentences, len(sentences))).round().astype(int)
    return {
        "sentences": [sentences[i] for i in picked],
        "logits": {variant: values[picked].astype(float).tolist() for variant, values in logits.items()},
        "tolerance": cfg.golden_tolerance,
    }


def parity_gate(session, model, arrays: dict, cfg: ExportConfig) -> float:
    """fp32 ONNX against torch on padded batches (this also checks the dynamic axes); UserError past the limit."""
    from acceptability.core.errors import UserError
    from acceptability.export.parity import onnx_logits, torch_logits

    max_diff = float(abs(onnx_logits(session, arrays, 64) - torch_logits(model, arrays, 64)).max())
    if max_diff > cfg.max_abs_logit_diff:
        raise UserError(
            f"parity gate: ONNX fp32 logits differ from torch by up to {max_diff:.2e} on the "
            f"validation set; export.max_abs_logit_diff allows {cfg.max_abs_logit_diff}"
        )
    return max_diff


def validation_inputs(tokenized: Path, raw: Path) -> tuple[dict, list[str]]:
    """The tokenized validation split and its sentences in the same order (the golden set's text)."""
    from acceptability.core.errors import UserError
    from acceptability.data.cola import read_split
    from acceptability.data.encode import load_encoded

    arrays = load_encoded(tokenized / "validation.npz")
    text = read_split(raw / "validation.csv").set_index("idx")["sentence"]
    missing = sorted(set(arrays["idx"].tolist()) - set(text.index))
    if missing:
        raise UserError(f"{raw / 'validation.csv'} lacks rows {missing[:5]} of the tokenized validation split")
    return arrays, text.loc[arrays["idx"]].tolist()


def int8_verdict(by_isa: dict, cfg: ExportConfig) -> dict:
    """int8's gate over this CPU and the emulated ones: its largest MCC drop, its lowest agreement with fp32, and
    whether that drop is within cfg.max_int8_mcc_drop."""
    drop = max(row["mcc_drop"] for row in by_isa.values())
    agreement = min(row["agreement"] for row in by_isa.values())
    return {"int8_mcc_drop": drop, "int8_agreement": agreement, "int8_servable": drop <= cfg.max_int8_mcc_drop}


def card_results(
    arrays: dict, sentences: list[str], logits: dict, reference: dict, temperature: float, cfg: ExportConfig
) -> dict:
    """What the card records of the variants' validation logits: metrics and ECE, the golden set (from `reference`,
    the logits every CPU must match) and the drift baselines."""
    from acceptability.export.parity import variant_metrics

    labels, lengths = arrays["labels"], np.diff(arrays["offsets"])
    return {
        "metrics": {
            variant: variant_metrics(labels, values) | calibration_report(labels, values, temperature)
            for variant, values in logits.items()
        },
        "golden": golden_set(sentences, reference, cfg),
        "drift_baseline": {variant: drift_baseline_of(values, lengths) for variant, values in logits.items()},
        "calibration": {"temperature": temperature, "method": "temperature scaling", "fitted_on": "calibration split"},
    }


def export_onnx(
    model_dir: Path, splits: dict, sentences: list[str], out: Path, cfg: ExportConfig, max_len: int, model_name: str
) -> dict:
    """Export, gate and card: fp32 logits within cfg's max_abs_logit_diff of torch on the whole validation set
    (else UserError); int8 servable when its MCC drop is within max_int8_mcc_drop on this CPU and on each of
    cfg.emulated_isas. splits: the tokenized "train" (int8's smoothing) and "validation" splits; sentences: the
    validation text, in the same order. Returns the stage's metrics."""
    from acceptability.core.atomic import atomic_path
    from acceptability.export.isa import onnx_logits, session_of
    from acceptability.inference.card import VARIANT_FILES, build_card, write_card

    with atomic_path(out) as folder:
        folder.mkdir()
        arrays = splits["validation"]
        model, int8_recipe = build_variants(model_dir, folder, cfg, splits["train"])
        sessions = {variant: session_of(folder / name, 0) for variant, name in VARIANT_FILES.items()}
        max_diff = parity_gate(sessions["fp32"], model, arrays, cfg)
        # Metrics at batch 1: int8's activation scales are computed per call, so a sentence's own call is what it
        # gets when served alone.
        logits = {variant: onnx_logits(session, arrays, 1) for variant, session in sessions.items()}
        by_isa, int8_logits = int8_by_isa(
            folder / VARIANT_FILES["int8"], arrays, logits, cfg.emulated_isas, cfg.max_int8_mcc_drop
        )
        verdict = int8_verdict(by_isa, cfg)
        # VNNI's integer sums are exact: where it was emulated, its logits are the reference every CPU must match.
        reference = {"fp32": logits["fp32"], "int8": int8_logits.get("vnni", logits["int8"])}
        results = card_results(arrays, sentences, logits, reference, model.temperature, cfg)
        gates = {"fp32_max_abs_logit_diff": max_diff, **verdict, "int8_by_isa": by_isa}
        write_card(folder, build_card(folder, cfg, max_len, model_name, results | {"gates": gates} | int8_recipe))
    metrics = results["metrics"]
    return {
        "onnx_fp32": metrics["fp32"],
        "onnx_int8": metrics["int8"],
        "calibration_temperature": model.temperature,
        **gates,
    }

"""Export a saved classifier to ONNX (fp32), fuse its graph for ONNX Runtime, and quantize it to int8."""

import json
import logging
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from acceptability.config import ExportConfig
from acceptability.module import load_classifier

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


def quantize_int8(source: Path, out: Path, per_channel: bool, reduce_range: bool = False) -> None:
    """Dynamic int8 quantization of the weights (activations quantized on the fly).

    reduce_range stores 7-bit weights. ONNX Runtime documents it as more accurate on x86 CPUs without VNNI, whose
    u8*s8 AVX2 kernel can saturate; here it lost less MCC on both defaults measured, at the same speed
    (docs/decisions.md).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

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
                weight_type=QuantType.QInt8,
                per_channel=per_channel,
                reduce_range=reduce_range,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
        finally:
            logging.getLogger().removeFilter(hint)


def drift_baseline_of(logits: np.ndarray, token_lengths: np.ndarray) -> dict:
    from acceptability.calibration import probabilities
    from acceptability.inference.card import drift_baseline

    probs = probabilities(logits)
    return drift_baseline(logits.argmax(axis=1).tolist(), probs.max(axis=1).tolist(), token_lengths.tolist())


def calibration_report(labels: np.ndarray, logits: np.ndarray, temperature: float) -> dict:
    """ECE of one variant's (already calibrated) logits, and of the same logits before calibration."""
    from acceptability.calibration import ece, probabilities

    return {
        "ece": ece(probabilities(logits), labels),
        "ece_uncalibrated": ece(probabilities(logits * temperature), labels),
    }


def build_variants(model_dir: Path, folder: Path, cfg: ExportConfig) -> torch.nn.Module:
    """model.onnx (fp32), model.int8.onnx and tokenizer.json into folder; returns the torch model."""
    from acceptability.inference.card import VARIANT_FILES

    config = json.loads((model_dir / "config.json").read_text())
    fp32 = folder / VARIANT_FILES["fp32"]
    model = export_fp32(model_dir, fp32, cfg.opset)
    shutil.copyfile(model_dir / "tokenizer.json", folder / "tokenizer.json")
    to_quantize = fp32
    if cfg.fuse:
        to_quantize = folder / "fused.tmp.onnx"
        fuse(fp32, to_quantize, config["num_attention_heads"], config["hidden_size"])
    quantize_int8(to_quantize, folder / VARIANT_FILES["int8"], cfg.per_channel, cfg.reduce_range)
    if cfg.fuse:
        to_quantize.unlink()
    return model


def export_onnx(model_dir: Path, tokenized: Path, out: Path, cfg: ExportConfig, max_len: int, model_name: str) -> dict:
    """Export, gate and card: fp32 logits within cfg's max_abs_logit_diff of torch on the whole validation set
    (else UserError); int8 servable when its MCC drop is within max_int8_mcc_drop. Returns the stage's metrics."""
    import onnxruntime as ort

    from acceptability.atomic import atomic_path
    from acceptability.encode import load_encoded
    from acceptability.errors import UserError
    from acceptability.inference.card import VARIANT_FILES, build_card, write_card
    from acceptability.parity import onnx_logits, torch_logits, variant_metrics

    arrays = load_encoded(tokenized / "validation.npz")
    with atomic_path(out) as folder:
        folder.mkdir()
        model = build_variants(model_dir, folder, cfg)
        sessions = {
            variant: ort.InferenceSession(str(folder / name), providers=["CPUExecutionProvider"])
            for variant, name in VARIANT_FILES.items()
        }
        # Parity on padded batches (this also checks the dynamic axes), then the metrics at batch 1: int8's
        # activation scales are computed per call, so a sentence's own call is what it gets when served alone.
        max_diff = float(abs(onnx_logits(sessions["fp32"], arrays, 64) - torch_logits(model, arrays, 64)).max())
        if max_diff > cfg.max_abs_logit_diff:
            raise UserError(
                f"parity gate: ONNX fp32 logits differ from torch by up to {max_diff:.2e} on the "
                f"validation set; export.max_abs_logit_diff allows {cfg.max_abs_logit_diff}"
            )
        logits = {variant: onnx_logits(session, arrays, 1) for variant, session in sessions.items()}
        labels, temperature = arrays["labels"], model.temperature
        metrics = {
            variant: variant_metrics(labels, values) | calibration_report(labels, values, temperature)
            for variant, values in logits.items()
        }
        drop = metrics["fp32"]["mcc"] - metrics["int8"]["mcc"]
        gates = {
            "fp32_max_abs_logit_diff": max_diff,
            "int8_mcc_drop": drop,
            "int8_agreement": float((logits["fp32"].argmax(1) == logits["int8"].argmax(1)).mean()),
            "int8_servable": drop <= cfg.max_int8_mcc_drop,
        }
        results = {"metrics": metrics, "gates": gates, "int8_servable": gates["int8_servable"]}
        results["drift_baseline"] = {
            variant: drift_baseline_of(values, np.diff(arrays["offsets"])) for variant, values in logits.items()
        }
        results["calibration"] = {
            "temperature": temperature,
            "method": "temperature scaling",
            "fitted_on": "calibration split",
        }
        write_card(folder, build_card(folder, cfg, max_len, model_name, results))
    return {"onnx_fp32": metrics["fp32"], "onnx_int8": metrics["int8"], "calibration_temperature": temperature, **gates}

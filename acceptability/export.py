"""Export a saved classifier to ONNX (fp32), fuse its graph for ONNX Runtime, and quantize it to int8."""

import logging
import shutil
import tempfile
import warnings
from pathlib import Path

import onnx
import torch

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

"""The export stage's gates: ONNX logits against torch, and int8 predictions against fp32."""

import numpy as np
import torch

from acceptability.core.scores import scores
from acceptability.export.isa import batches, onnx_logits

__all__ = ["onnx_logits", "torch_logits", "variant_metrics"]


@torch.inference_mode()
def torch_logits(model: torch.nn.Module, arrays: dict, size: int) -> np.ndarray:
    return np.concatenate(
        [model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy() for ids, mask in batches(arrays, size)]
    )


def variant_metrics(labels: np.ndarray, logits: np.ndarray) -> dict:
    result = scores(labels, logits.argmax(axis=1))
    return {"mcc": result["mcc"], "accuracy": result["accuracy"]}

"""The export stage's gates: ONNX logits against torch, and int8 predictions against fp32."""

import numpy as np
import torch

from acceptability.scores import scores


def pad(rows: list) -> tuple[np.ndarray, np.ndarray]:
    """Token-id rows -> (input_ids, attention_mask), int64, padded with 0 to the longest row."""
    width = max(len(row) for row in rows)
    input_ids = np.zeros((len(rows), width), dtype=np.int64)
    attention_mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = row
        attention_mask[i, : len(row)] = 1
    return input_ids, attention_mask


def batches(arrays: dict[str, np.ndarray], size: int):
    """Validation rows as padded (input_ids, attention_mask) int64 batches, in order."""
    offsets = arrays["offsets"]
    for start in range(0, len(offsets) - 1, size):
        stop = min(start + size, len(offsets) - 1)
        yield pad([arrays["input_ids"][offsets[i] : offsets[i + 1]] for i in range(start, stop)])


@torch.inference_mode()
def torch_logits(model: torch.nn.Module, arrays: dict, size: int) -> np.ndarray:
    return np.concatenate(
        [model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy() for ids, mask in batches(arrays, size)]
    )


def onnx_logits(session, arrays: dict, size: int) -> np.ndarray:
    names = [node.name for node in session.get_inputs()]
    return np.concatenate(
        [session.run(["logits"], dict(zip(names, (ids, mask), strict=True)))[0] for ids, mask in batches(arrays, size)]
    )


def variant_metrics(labels: np.ndarray, logits: np.ndarray) -> dict:
    result = scores(labels, logits.argmax(axis=1))
    return {"mcc": result["mcc"], "accuracy": result["accuracy"]}

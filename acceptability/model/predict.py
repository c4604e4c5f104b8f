"""Batch prediction with a saved or in-memory torch classifier: P(acceptable) for each validation row."""

import numpy as np
import torch

from acceptability.core.console import progress


@torch.inference_mode()
def predict_acceptable(model: torch.nn.Module, loader, desc: str = "predict") -> np.ndarray:
    """Return P(acceptable) per row, in loader order. `model(input_ids, attention_mask)` must give logits."""
    model.eval()
    chunks = []
    for batch in progress(loader, desc=desc, unit="batches"):
        logits = model(batch["input_ids"], batch["attention_mask"])
        chunks.append(torch.softmax(logits.float(), dim=-1)[:, 1].cpu().numpy())
    return np.concatenate(chunks) if chunks else np.zeros(0)


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, loader, desc: str = "logits") -> np.ndarray:
    """(n, 2) logits per row, in loader order."""
    model.eval()
    chunks = [
        model(batch["input_ids"], batch["attention_mask"]).float().cpu().numpy()
        for batch in progress(loader, desc=desc, unit="batches")
    ]
    return np.concatenate(chunks) if chunks else np.zeros((0, 2), np.float32)

"""Batch prediction with a saved or in-memory torch classifier: P(acceptable) for each validation row."""

import numpy as np
import torch
from tqdm import tqdm


@torch.inference_mode()
def predict_acceptable(model: torch.nn.Module, loader, desc: str = "predict") -> np.ndarray:
    """Return P(acceptable) per row, in loader order. `model(input_ids, attention_mask)` must give logits."""
    model.eval()
    chunks = []
    for batch in tqdm(loader, desc=desc, unit="batch"):
        logits = model(batch["input_ids"], batch["attention_mask"])
        chunks.append(torch.softmax(logits.float(), dim=-1)[:, 1].cpu().numpy())
    return np.concatenate(chunks) if chunks else np.zeros(0)

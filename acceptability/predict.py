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


class LogitsOnly(torch.nn.Module):
    """Adapts a Hugging Face classifier to the (input_ids, attention_mask) -> logits call."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

"""Linear probes on the frozen pretrained student: how much of CoLA each layer's output holds before fine-tuning.

For each hidden state (the embeddings' output, then each layer's), mean-pooled over the real tokens, a logistic
regression (standardised features, C 0.1, balanced classes) is fitted on the train rows and scored by MCC on the
calibration rows and on validation. A diagnostic, not a result: nothing is trained but the probes.

    python docs/screens/layer_probe.py [models/pretrained]      # after `dvc repro tokenize`; about a minute on 2 cores
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import matthews_corrcoef
from sklearn.preprocessing import StandardScaler
from torch.utils.data import DataLoader
from transformers import AutoModel

from acceptability.data.encode import load_encoded
from acceptability.model.datamodule import EncodedSplit, PadCollator

TOKENIZED = Path("data/tokenized")


def pooled_states(model, path: Path, batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """The mean-pooled hidden states of a tokenized split, shaped (rows, states, features), and its labels."""
    split = EncodedSplit(load_encoded(path))
    order = np.argsort(np.diff(split.arrays["offsets"]), kind="stable")  # similar lengths together: little padding
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    pad_token_id = json.loads((TOKENIZED / "meta.json").read_text())["pad_token_id"]
    chunks = []
    with torch.no_grad():
        for batch in DataLoader(split, batch_sampler=batches, collate_fn=PadCollator(pad_token_id)):
            mask = batch["attention_mask"]
            states = model(input_ids=batch["input_ids"], attention_mask=mask, output_hidden_states=True).hidden_states
            weights = mask.unsqueeze(-1).float()
            chunks.append(torch.stack([(state * weights).sum(1) / weights.sum(1) for state in states], dim=1).numpy())
    in_order = np.concatenate(chunks)
    pooled = np.empty_like(in_order)
    pooled[order] = in_order  # back to the file's row order
    return pooled, split.arrays["labels"]


def main(pretrained: str = "models/pretrained") -> None:
    torch.set_num_threads(1)  # one order of sums: the figures in docs/experiments.md repeat to the last digit
    model = AutoModel.from_pretrained(pretrained, use_safetensors=True).eval()
    train, calibration, validation = (
        pooled_states(model, TOKENIZED / f"{name}.npz") for name in ("train", "calibration", "validation")
    )
    print("hidden state | calibration MCC | val MCC")
    for layer in range(train[0].shape[1]):
        scaler = StandardScaler().fit(train[0][:, layer])
        probe = LogisticRegression(C=0.1, max_iter=2000, class_weight="balanced")
        probe.fit(scaler.transform(train[0][:, layer]), train[1])
        scores = [
            matthews_corrcoef(labels, probe.predict(scaler.transform(states[:, layer])))
            for states, labels in (calibration, validation)
        ]
        name = "embeddings" if layer == 0 else f"layer {layer}"
        print(f"{name} | {scores[0]:.3f} | {scores[1]:.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:])

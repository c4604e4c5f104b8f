"""Linear probes on the frozen pretrained student: how much of CoLA each layer's output holds before fine-tuning.

For each hidden state (the embeddings' output, then each layer's), mean-pooled over the real tokens, a logistic
regression (standardised features, C 0.1, balanced classes) is fitted on the train rows and scored by MCC on the
calibration rows and on validation. A diagnostic, not a result: nothing is trained but the probes.

    python docs/screens/layer_probe.py [models/pretrained]      # after `dvc repro tokenize`; about a minute on 2 cores
"""

import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import matthews_corrcoef
from sklearn.preprocessing import StandardScaler
from transformers import AutoModel

from acceptability.data.encode import load_encoded

TOKENIZED = Path("data/tokenized")


def pooled_states(model, path: Path, batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """The mean-pooled hidden states of a tokenized split, shaped (rows, states, features), and its labels."""
    split = load_encoded(path)
    rows = [split["input_ids"][a:b] for a, b in zip(split["offsets"][:-1], split["offsets"][1:], strict=True)]
    pooled = [None] * len(rows)
    order = np.argsort([len(row) for row in rows], kind="stable")  # similar lengths together: little padding
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            batch = order[start : start + batch_size]
            mask = torch.zeros(len(batch), max(len(rows[i]) for i in batch), dtype=torch.long)
            ids = torch.zeros_like(mask)
            for j, i in enumerate(batch):
                ids[j, : len(rows[i])], mask[j, : len(rows[i])] = torch.from_numpy(rows[i].astype(np.int64)), 1
            states = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
            weights = mask.unsqueeze(-1).float()
            means = torch.stack([(state * weights).sum(1) / weights.sum(1) for state in states], dim=1)
            for j, i in enumerate(batch):
                pooled[i] = means[j].numpy()
    return np.stack(pooled), split["labels"]


def main(pretrained: str = "models/pretrained") -> None:
    torch.set_num_threads(1)  # as for the figures in docs/experiments.md: one order of sums
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

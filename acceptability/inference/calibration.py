"""Probabilities, temperature scaling and expected calibration error, in numpy: the predictor, the training run
and the export gates share them, without torch.

Dividing both logits by one T > 0 keeps their order, so the argmax label, and every MCC, stays the same.
"""

import numpy as np

BINS = 10  # equal-width confidence bins for ECE and the reliability diagram


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    return float(-log_softmax(logits / temperature)[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray, low: float = 0.05, high: float = 20.0) -> float:
    """The T minimising the negative log-likelihood of `labels`: golden-section search over log T (the NLL is
    unimodal in it), deterministic and torch-free."""
    logits, labels = np.asarray(logits, np.float64), np.asarray(labels, np.int64)
    if len(labels) == 0:
        return 1.0
    a, b = np.log(low), np.log(high)
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(80):
        c, d = b - ratio * (b - a), a + ratio * (b - a)
        if nll(logits, labels, np.exp(c)) < nll(logits, labels, np.exp(d)):
            b = d
        else:
            a = c
    return round(float(np.exp((a + b) / 2)), 6)


def probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    return np.exp(log_softmax(np.asarray(logits, np.float64) / temperature))


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> list[dict]:
    """Per confidence bin: its range, how many predictions, their mean confidence and their accuracy."""
    confidence, predicted = probs.max(axis=1), probs.argmax(axis=1)
    correct = predicted == np.asarray(labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows = []
    for i in range(bins):
        mask = which == i
        n = int(mask.sum())
        rows.append(
            {
                "bin_low": round(float(edges[i]), 2),
                "bin_high": round(float(edges[i + 1]), 2),
                "n": n,
                "confidence": round(float(confidence[mask].mean()), 6) if n else None,
                "accuracy": round(float(correct[mask].mean()), 6) if n else None,
            }
        )
    return rows


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error: the bins' |accuracy - confidence|, weighted by their share of predictions."""
    table = reliability(probs, labels, bins)
    total = sum(row["n"] for row in table)
    gap = sum(row["n"] * abs(row["accuracy"] - row["confidence"]) for row in table if row["n"])
    return round(gap / total, 6) if total else 0.0

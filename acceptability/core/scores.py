"""Classification scores from labels and predictions, in numpy, so evaluation and reports need no torch."""

import numpy as np


def confusion(labels, predictions) -> np.ndarray:
    """2x2 counts: rows are true labels, columns are predictions (0 = unacceptable, 1 = acceptable)."""
    matrix = np.zeros((2, 2), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels, int), np.asarray(predictions, int)), 1)
    return matrix


def predicted_labels(p_acceptable) -> np.ndarray:
    """Label ids from P(acceptable): 1 where acceptable is strictly the more probable. This is the argmax that the
    Predictor and the export gates take over the logits (a tie goes to class 0, unacceptable): one rule everywhere."""
    return (np.asarray(p_acceptable) > 0.5).astype(int)


def mcc(labels, predictions):
    """Matthews correlation along the last axis: a float for one set of predictions, an array for a stack of them
    (the promotion gate's bootstrap). `0.0` where a row or column of the confusion matrix is empty (as torchmetrics)."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    tp = ((labels == 1) & (predictions == 1)).sum(-1).astype(float)
    tn = ((labels == 0) & (predictions == 0)).sum(-1).astype(float)
    fp = ((labels == 0) & (predictions == 1)).sum(-1).astype(float)
    fn = ((labels == 1) & (predictions == 0)).sum(-1).astype(float)
    denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    value = np.divide(tp * tn - fp * fn, denominator, out=np.zeros_like(denominator), where=denominator > 0)
    return float(value) if value.ndim == 0 else value


def scores(labels, predictions) -> dict:
    """MCC, accuracy and macro precision/recall/F1 over both classes, plus the count."""
    matrix = confusion(labels, predictions).astype(float)
    support, predicted, correct = matrix.sum(axis=1), matrix.sum(axis=0), np.diag(matrix)
    precision = np.divide(correct, predicted, out=np.zeros(2), where=predicted > 0)
    recall = np.divide(correct, support, out=np.zeros(2), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(2), where=precision + recall > 0)
    n = int(matrix.sum())
    return {
        "mcc": mcc(labels, predictions),
        "accuracy": float(correct.sum() / n) if n else 0.0,
        "f1_macro": float(f1.mean()),
        "precision_macro": float(precision.mean()),
        "recall_macro": float(recall.mean()),
        "n": n,
    }

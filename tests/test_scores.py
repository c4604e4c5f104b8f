"""The numpy scores agree with torchmetrics and with hand-computed values."""

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import binary_matthews_corrcoef

from acceptability.scores import confusion, mcc, scores


def test_known_values():
    labels = [1, 1, 1, 0, 0, 1, 0, 1]
    predictions = [1, 1, 0, 0, 1, 1, 0, 1]
    assert confusion(labels, predictions).tolist() == [[2, 1], [1, 4]]
    # (tp*tn - fp*fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = (8 - 1) / sqrt(5*5*3*3) = 7/15
    assert mcc(labels, predictions) == pytest.approx(7 / 15)
    result = scores(labels, predictions)
    assert result["accuracy"] == pytest.approx(6 / 8)
    assert result["precision_macro"] == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert result["recall_macro"] == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert result["n"] == 8


def test_extremes():
    labels = [0, 1, 0, 1]
    assert mcc(labels, labels) == 1.0
    assert mcc(labels, [1, 0, 1, 0]) == -1.0
    assert mcc(labels, [1, 1, 1, 1]) == 0.0  # a constant predictor


def test_matches_torchmetrics():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 500)
    predictions = np.where(rng.random(500) < 0.7, labels, 1 - labels)
    expected = binary_matthews_corrcoef(torch.tensor(predictions), torch.tensor(labels)).item()
    assert mcc(labels, predictions) == pytest.approx(expected, abs=1e-6)

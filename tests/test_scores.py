"""The numpy scores agree with torchmetrics and with hand-computed values."""

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import binary_matthews_corrcoef

from acceptability.core.scores import confusion, mcc, predicted_labels, scores


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


def test_a_stack_of_predictions_gets_the_mcc_of_each_row():
    """The promotion gate's bootstrap scores thousands of resamples at once with the same function."""
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, (50, 40))
    predictions = np.where(rng.random((50, 40)) < 0.8, labels, 1 - labels)
    predictions[0] = 1  # a constant row: 0.0, as for one set
    stacked = mcc(labels, predictions)
    assert stacked.shape == (50,)
    assert stacked.tolist() == [mcc(row_labels, row) for row_labels, row in zip(labels, predictions, strict=True)]
    assert stacked[0] == 0.0


def test_decide_is_the_argmax_of_the_two_probabilities():
    p_acceptable = np.array([0.0, 0.2, 0.5, 0.5000001, 0.9, 1.0])
    expected = np.argmax(np.stack([1 - p_acceptable, p_acceptable], axis=1), axis=1)
    assert predicted_labels(p_acceptable).tolist() == expected.tolist() == [0, 0, 0, 1, 1, 1]

"""Grammatical-acceptability classification on CoLA: the reusable logic behind the DVC stages."""

LABELS = ("unacceptable", "acceptable")  # class id order: 0 = unacceptable, 1 = acceptable
POOLINGS = ("cls", "mean", "max")  # model.pooling: the model's own [CLS] head, or mean/max over real tokens

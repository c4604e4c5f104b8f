"""Grammatical-acceptability classification on CoLA: the reusable logic behind the DVC stages."""

LABELS = ("unacceptable", "acceptable")  # class id order: 0 = unacceptable, 1 = acceptable
POOLINGS = ("cls", "mean", "max")  # model.pooling: the model's own [CLS] head, or mean/max over real tokens
LOGIT_COLUMNS = tuple(f"logit_{label}" for label in LABELS)  # the teacher stage's files, in class-id order

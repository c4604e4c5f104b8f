"""Perturbed copies of train sentences (a word swapped, dropped or duplicated) for the teacher to label.

Most come out unacceptable, some do not ("She quickly left" -> "Quickly she left"): the teacher's logits say which,
so the student learns from more varied sentences than CoLA's 8,551 without anyone labelling them.
"""

import numpy as np
import pandas as pd

OPERATIONS = ("swap", "drop", "duplicate")


def perturb(words: list[str], operation: str, rng: np.random.Generator) -> list[str]:
    words = list(words)
    if operation == "swap" and len(words) >= 2:
        i = int(rng.integers(len(words) - 1))
        words[i], words[i + 1] = words[i + 1], words[i]
    elif operation == "drop" and len(words) >= 2:
        del words[int(rng.integers(len(words)))]
    else:  # duplicate, and the fallback for one-word sentences
        i = int(rng.integers(len(words)))
        words.insert(i, words[i])
    return words


def perturbations(frame: pd.DataFrame, copies: int, seed: int) -> pd.DataFrame:
    """`copies` perturbed versions of each row's sentence, each different from it: columns source_idx, copy (0 to
    copies - 1), operation, sentence. The same rows, copies and seed give the same sentences."""
    rng = np.random.default_rng(seed)
    rows = []
    for idx, sentence in zip(frame["idx"], frame["sentence"], strict=True):
        words = sentence.split()
        if not words:
            continue
        for copy in range(copies):
            operation = OPERATIONS[int(rng.integers(len(OPERATIONS)))] if len(words) >= 2 else "duplicate"
            changed = perturb(words, operation, rng)
            if changed == words:  # swapped two equal words: duplicating always changes the sentence
                operation, changed = "duplicate", perturb(words, "duplicate", rng)
            rows.append((int(idx), copy, operation, " ".join(changed)))
    return pd.DataFrame(rows, columns=["source_idx", "copy", "operation", "sentence"])

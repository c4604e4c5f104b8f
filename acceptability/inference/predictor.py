"""A torch-free predictor: ONNX Runtime, tokenizers and numpy only, so serving starts fast and ships small.

predictor = Predictor.load("models/onnx", variant="int8")
predictor.predict(["The cat sat on the mat."])
# [{"label": "acceptable", "probabilities": {"acceptable": …, "unacceptable": …}}]
"""

from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from acceptability.inference.calibration import probabilities
from acceptability.inference.card import CARD, VARIANT_FILES, ModelFilesError, read_card, verified

__all__ = ["CARD", "VARIANT_FILES", "ModelFilesError", "Predictor", "read_card", "served_tokenizer", "verified"]

MAX_BATCH = 256


def served_tokenizer(folder: Path, card: dict) -> Tokenizer:
    """The export's tokenizer, verified, unpadded and truncated at the card's max_seq_length."""
    tokenizer = Tokenizer.from_file(str(verified(folder, card, "tokenizer.json")))
    tokenizer.no_padding()
    tokenizer.enable_truncation(int(card["max_seq_length"]))
    return tokenizer


def same_length_groups(rows: list) -> list[list[int]]:
    """Indices of the rows, grouped by length. On a CPU the cost is linear in padded tokens with little per call,
    so one call per length beats one padded batch; and with no padding, int8's per-call activation scales see
    only real tokens."""
    groups: dict[int, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(len(row), []).append(i)
    return list(groups.values())


class Predictor:
    """Batch prediction with one ONNX variant of the classifier."""

    def __init__(self, session: ort.InferenceSession, tokenizer: Tokenizer, card: dict, variant: str):
        self.session, self.tokenizer, self.card, self.variant = session, tokenizer, card, variant
        self.labels = list(card["labels"])  # class-id order: 0 = unacceptable, 1 = acceptable
        self.input_names = [node.name for node in session.get_inputs()]
        # int8 computes its activation scales per call, over every sentence in it. One sentence a call keeps
        # each prediction the one the export gate measured, whatever else is batched with it (batched, some
        # labels flip and MCC drops). It costs int8 throughput at batch 32: docs/decisions.md#inference.
        self.one_sentence_per_call = variant == "int8"

    @classmethod
    def load(cls, folder: str | Path, variant: str = "int8", threads: int = 0, card: dict | None = None) -> "Predictor":
        """Load `variant` (fp32 or int8) from an export folder, checking every file against the model card.

        threads: ONNX Runtime intra-op threads; 0 lets ONNX Runtime use every core. card: the folder's card, when
        the caller has read it already.
        """
        folder = Path(folder)
        if variant not in VARIANT_FILES:
            raise ValueError(f"variant must be one of {', '.join(VARIANT_FILES)}; found {variant!r}")
        card = card or read_card(folder)
        model_path = verified(folder, card, VARIANT_FILES[variant])
        tokenizer = served_tokenizer(folder, card)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # ONNX Runtime reports a corrupt graph as several exception types
            raise ModelFilesError(f"{model_path}: ONNX Runtime cannot load it: {err}") from None
        return cls(session, tokenizer, card, variant)

    def logits(self, sentences: list[str]) -> np.ndarray:
        if not isinstance(sentences, (list, tuple)) or not sentences:
            raise ValueError("sentences must be a non-empty list of strings")
        if len(sentences) > MAX_BATCH:
            raise ValueError(f"at most {MAX_BATCH} sentences a call; found {len(sentences)}")
        for i, sentence in enumerate(sentences):
            if not isinstance(sentence, str) or not sentence.strip():
                raise ValueError(f"sentence {i} must be a non-empty string")
        rows = [encoding.ids for encoding in self.tokenizer.encode_batch(list(sentences))]
        logits = np.empty((len(rows), len(self.labels)), dtype=np.float32)
        groups = [[i] for i in range(len(rows))] if self.one_sentence_per_call else same_length_groups(rows)
        for group in groups:
            input_ids = np.asarray([rows[i] for i in group], dtype=np.int64)
            feeds = {"input_ids": input_ids, "attention_mask": np.ones_like(input_ids)}
            logits[group] = self.session.run(["logits"], {name: feeds[name] for name in self.input_names})[0]
        return logits

    def probabilities(self, sentences: list[str]) -> np.ndarray:
        """(n, 2) probabilities in class-id order."""
        return probabilities(self.logits(sentences))

    def predict(self, sentences: list[str]) -> list[dict]:
        """For each sentence: its label and the probability of each label, by name."""
        results = []
        for row in self.probabilities(sentences):
            results.append(
                {
                    "label": self.labels[int(row.argmax())],
                    "probabilities": {label: float(p) for label, p in zip(self.labels, row, strict=True)},
                }
            )
        return results

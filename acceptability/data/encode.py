"""Tokenize splits once, to compact numpy arrays. Imports neither torch nor Lightning."""

import json
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from acceptability.core.config import AUGMENT_OPERATIONS
from acceptability.core.errors import UserError

# teacher_logits only where the teacher labelled the rows; in augmented.npz only: copy (which perturbation of its
# source sentence it is), source (that sentence's idx) and operation (what made it, an index of AUGMENT_OPERATIONS)
KEYS = ("idx", "labels", "input_ids", "offsets", "teacher_logits", "copy", "source", "operation")


def load_tokenizer(model_dir: str | Path, max_seq_length: int) -> Tokenizer:
    path = Path(model_dir) / "tokenizer.json"
    if not path.is_file():
        raise UserError(f"{path} is missing: run `dvc repro download` first")
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()  # padding happens per batch, at training time
    tokenizer.enable_truncation(max_seq_length)
    return tokenizer


def encode(tokenizer: Tokenizer, sentences: list[str], batch: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Return (flat input ids, offsets): sentence i is ids[offsets[i]:offsets[i + 1]]."""
    from acceptability.core.console import progress

    ids: list[list[int]] = []
    for start in progress(range(0, len(sentences), batch), desc="tokenize", unit="batches"):
        ids.extend(encoding.ids for encoding in tokenizer.encode_batch(sentences[start : start + batch]))
    lengths = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(ids))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    flat = np.fromiter((token for row in ids for token in row), dtype=np.int32, count=int(offsets[-1]))
    return flat, offsets


def pad_token_id(tokenizer: Tokenizer) -> int:
    """BERT's [PAD] or MPNet's <pad>. Padded positions are masked; the id matters where positions count from it."""
    for token in ("[PAD]", "<pad>"):
        if tokenizer.token_to_id(token) is not None:
            return tokenizer.token_to_id(token)
    return 0


def save_encoded(path: Path, idx, labels, ids: np.ndarray, offsets: np.ndarray, **extra) -> None:
    arrays = {"idx": np.asarray(idx, np.int64), "labels": np.asarray(labels, np.int64)}
    arrays |= {"input_ids": ids, "offsets": offsets}
    if extra.get("teacher_logits") is not None:
        arrays["teacher_logits"] = np.asarray(extra["teacher_logits"], np.float32)
    for key in ("copy", "source", "operation"):
        if extra.get(key) is not None:
            arrays[key] = np.asarray(extra[key], np.int64)
    with open(path, "wb") as stream:  # a file object stops numpy from appending .npz to the temp name
        np.savez(stream, **arrays)


def load_encoded(path: str | Path) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} is missing: run `dvc repro tokenize` first")
    with np.load(path) as arrays:
        data = {key: arrays[key] for key in KEYS if key in arrays}
    if "input_ids" not in data or "offsets" not in data:
        raise UserError(f"{path}: not a tokenized split (no input_ids/offsets); re-run `dvc repro tokenize`")
    if len(data["offsets"]) != len(data["labels"]) + 1:
        raise UserError(f"{path}: offsets must have one more entry than labels")
    return data


def write_meta(path: Path, meta: dict) -> None:
    path.write_text(json.dumps(meta, indent=2) + "\n")


def copy_columns(frame) -> dict:
    """A perturbed copy's number, source sentence and operation (as its index in AUGMENT_OPERATIONS)."""
    unknown = sorted(set(frame["operation"]) - set(AUGMENT_OPERATIONS))
    if unknown:
        raise UserError(f"data/teacher/augmented.csv: operation {unknown[0]!r} is none of {list(AUGMENT_OPERATIONS)}")
    codes = frame["operation"].map(AUGMENT_OPERATIONS.index)
    return {"copy": frame["copy"], "source": frame["source_idx"], "operation": codes}


def tokenize_frames(tokenizer: Tokenizer, frames: dict, folder: Path, max_len: int, teacher: dict | None = None):
    """Each frame (idx, sentence, label) to folder/<name>.npz, with its teacher logits when given; returns meta."""
    meta = {"max_seq_length": max_len, "pad_token_id": pad_token_id(tokenizer), "splits": {}}
    for name, frame in frames.items():
        ids, offsets = encode(tokenizer, frame["sentence"].tolist())
        logits = (teacher or {}).get(name)
        copies = copy_columns(frame) if "copy" in frame else {}
        save_encoded(
            folder / f"{name}.npz", frame["idx"], frame["label"], ids, offsets, teacher_logits=logits, **copies
        )
        lengths = offsets[1:] - offsets[:-1]
        meta["splits"][name] = {  # a split may be empty: data.calibration_rows=0 holds nothing out
            "n": len(frame),
            "max_tokens": int(lengths.max(initial=0)),
            "mean_tokens": round(float(lengths.mean()), 2) if len(frame) else 0.0,
            "at_max_length": int((lengths >= max_len).sum()),
        }
    write_meta(folder / "meta.json", meta)
    return meta

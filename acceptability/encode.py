"""Tokenize splits once, to compact numpy arrays. Imports neither torch nor Lightning."""

import json
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from acceptability.errors import UserError


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
    from acceptability.console import progress

    ids: list[list[int]] = []
    for start in progress(range(0, len(sentences), batch), desc="tokenize", unit="batches"):
        ids.extend(encoding.ids for encoding in tokenizer.encode_batch(sentences[start : start + batch]))
    lengths = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(ids))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    flat = np.fromiter((token for row in ids for token in row), dtype=np.int32, count=int(offsets[-1]))
    return flat, offsets


def save_encoded(path: Path, idx, labels, ids: np.ndarray, offsets: np.ndarray) -> None:
    with open(path, "wb") as stream:  # a file object stops numpy from appending .npz to the temp name
        np.savez(
            stream, idx=np.asarray(idx, np.int64), labels=np.asarray(labels, np.int64), input_ids=ids, offsets=offsets
        )


def load_encoded(path: str | Path) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} is missing: run `dvc repro tokenize` first")
    with np.load(path) as arrays:
        data = {key: arrays[key] for key in ("idx", "labels", "input_ids", "offsets")}
    if len(data["offsets"]) != len(data["labels"]) + 1:
        raise UserError(f"{path}: offsets must have one more entry than labels")
    return data


def write_meta(path: Path, meta: dict) -> None:
    path.write_text(json.dumps(meta, indent=2) + "\n")

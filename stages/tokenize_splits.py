"""Stage `tokenize`: data/raw/*.csv -> data/tokenized/{train,calibration,validation}.npz, meta.json, and augmented.npz
(the teacher's perturbed sentences); train and augmented carry the teacher's logits. Params: data.max_seq_length.
"""

import argparse
from pathlib import Path

import pandas as pd

from acceptability import LOGIT_COLUMNS
from acceptability.atomic import atomic_path
from acceptability.cola import read_split
from acceptability.config import max_seq_length
from acceptability.encode import load_tokenizer, tokenize_frames
from acceptability.errors import run_cli
from acceptability.params import load_params

SPLITS = ("train", "calibration", "validation")


def teacher_logits(teacher: Path, frames: dict) -> dict:
    """The teacher's logits for the train rows (matched by idx) and its labelled perturbed sentences."""
    logits = pd.read_csv(teacher / "train.csv").set_index("idx")
    missing = set(frames["train"]["idx"]) - set(logits.index)
    if missing:  # NaN: training without distillation needs none; with it, train fails and names the cause
        print(f"note: {teacher}/train.csv has no logits for {len(missing)} train rows (another split)")
    augmented = pd.read_csv(teacher / "augmented.csv", keep_default_na=False, dtype={"sentence": str})
    frames["augmented"] = augmented.assign(label=-1)
    return {
        "train": logits.reindex(frames["train"]["idx"])[list(LOGIT_COLUMNS)].to_numpy(),
        "augmented": augmented[list(LOGIT_COLUMNS)].to_numpy(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--raw", type=Path, default=Path("data/raw"))
    parser.add_argument("--teacher", type=Path, default=Path("data/teacher"))
    parser.add_argument("--model", type=Path, default=Path("models/pretrained"))
    parser.add_argument("--out", type=Path, default=Path("data/tokenized"))
    args = parser.parse_args()
    max_len = max_seq_length(load_params(args.params))
    tokenizer = load_tokenizer(args.model, max_len)

    frames = {split: read_split(args.raw / f"{split}.csv") for split in SPLITS}
    logits = teacher_logits(args.teacher, frames)
    with atomic_path(args.out) as folder:
        folder.mkdir()
        meta = tokenize_frames(tokenizer, frames, folder, max_len, logits)
    print(f"tokenized: {meta['splits']}")


if __name__ == "__main__":
    run_cli(main)

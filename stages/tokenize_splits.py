"""Stage `tokenize`: data/raw/*.csv -> data/tokenized/{train,calibration,validation}.npz, meta.json, and augmented.npz
(the teacher's perturbed sentences); train and augmented carry the teacher's logits. Params: data.max_seq_length.
"""

import argparse
from pathlib import Path

import pandas as pd

from acceptability import LOGIT_COLUMNS
from acceptability.core.atomic import atomic_path
from acceptability.core.config import max_seq_length
from acceptability.core.errors import run_cli
from acceptability.core.params import load_params
from acceptability.data.cola import read_split
from acceptability.data.encode import load_tokenizer, tokenize_frames

SPLITS = ("train", "calibration", "validation")


def teacher_logits(teacher: Path, train: pd.DataFrame) -> tuple[dict, pd.DataFrame]:
    """The teacher's logits for the train rows (matched by idx; NaN where it has none) and for its perturbed
    sentences, and those sentences (label -1). Only distillation needs the logits: train checks them and names
    the file when rows lack them."""
    logits = pd.read_csv(teacher / "train.csv").set_index("idx")
    missing = set(train["idx"]) - set(logits.index)
    if missing:
        print(f"note: {teacher}/train.csv has no logits for {len(missing)} train rows; distillation will refuse them")
    augmented = pd.read_csv(teacher / "augmented.csv", keep_default_na=False, dtype={"sentence": str})
    logits = {
        "train": logits.reindex(train["idx"])[list(LOGIT_COLUMNS)].to_numpy(),
        "augmented": augmented[list(LOGIT_COLUMNS)].to_numpy(),
    }
    return logits, augmented.assign(label=-1)


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
    logits, frames["augmented"] = teacher_logits(args.teacher, frames["train"])
    with atomic_path(args.out) as folder:
        folder.mkdir()
        meta = tokenize_frames(tokenizer, frames, folder, max_len, logits)
    print(f"tokenized: {meta['splits']}")


if __name__ == "__main__":
    run_cli(main)

"""Stage `tokenize`: data/raw/*.csv -> data/tokenized/{train,validation}.npz and meta.json.

Params: data.max_seq_length. Imports neither torch nor Lightning, so it stays fast.
"""

import argparse
from pathlib import Path

from acceptability.atomic import atomic_path
from acceptability.cola import read_split
from acceptability.encode import encode, load_tokenizer, save_encoded, write_meta
from acceptability.errors import run_cli
from acceptability.params import load_params, positive, section

SPLITS = ("train", "validation")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--raw", type=Path, default=Path("data/raw"))
    parser.add_argument("--model", type=Path, default=Path("models/pretrained"))
    parser.add_argument("--out", type=Path, default=Path("data/tokenized"))
    args = parser.parse_args()
    data_cfg = section(load_params(args.params), "data")
    positive(data_cfg, "max_seq_length", int, "data")
    max_len = int(data_cfg["max_seq_length"])
    tokenizer = load_tokenizer(args.model, max_len)

    meta = {"max_seq_length": max_len, "pad_token_id": tokenizer.token_to_id("[PAD]") or 0, "splits": {}}
    with atomic_path(args.out) as folder:
        folder.mkdir()
        for split in SPLITS:
            frame = read_split(args.raw / f"{split}.csv")
            ids, offsets = encode(tokenizer, frame["sentence"].tolist())
            save_encoded(folder / f"{split}.npz", frame["idx"], frame["label"], ids, offsets)
            lengths = offsets[1:] - offsets[:-1]
            meta["splits"][split] = {
                "n": len(frame),
                "max_tokens": int(lengths.max()),
                "mean_tokens": round(float(lengths.mean()), 2),
                "at_max_length": int((lengths >= max_len).sum()),
            }
        write_meta(folder / "meta.json", meta)
    print(f"tokenized: {meta['splits']}")


if __name__ == "__main__":
    run_cli(main)

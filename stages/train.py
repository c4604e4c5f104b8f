"""Stage `train`: fine-tune on data/tokenized/ from models/pretrained/; the best epoch (val/mcc) to models/model/.

Params: model.name, model.pooling, model.num_layers, train.*. Curves go to metrics/train/ (DVCLive) and to W&B
(offline by default).
"""

import argparse
from pathlib import Path

from acceptability.config import ModelShape, TrainConfig
from acceptability.errors import run_cli
from acceptability.params import load_params, section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--pretrained", type=Path, default=Path("models/pretrained"))
    parser.add_argument("--tokenized", type=Path, default=Path("data/tokenized"))
    parser.add_argument("--raw", type=Path, default=Path("data/raw"))
    parser.add_argument("--out", type=Path, default=Path("models/model"))
    parser.add_argument("--live-dir", type=Path, default=Path("metrics/train"))
    args = parser.parse_args()
    params = load_params(args.params)
    # Built and checked once, before torch and Lightning are even imported: a typo costs a second, not a run.
    model, config = (
        ModelShape.from_section(section(params, "model")),
        TrainConfig.from_section(section(params, "train")),
    )

    from acceptability.training import TrainPaths, train

    paths = TrainPaths(
        pretrained=args.pretrained, tokenized=args.tokenized, raw=args.raw, out=args.out, dvclive=args.live_dir
    )
    result = train(model, config, paths)
    print(f"best val/mcc {result['best_val_mcc']:.4f} after {result['epochs_run']} epochs")


if __name__ == "__main__":
    run_cli(main)

"""Stage `train`: fine-tune on data/tokenized/ from models/pretrained/; to models/model/, the epoch selected on the
calibration rows held out of train (never on validation).

Params: model.name, model.pooling, model.num_layers, train.*. Curves go to metrics/train/ (DVCLive) and to W&B
(offline by default).
"""

import argparse
from pathlib import Path

from acceptability.core.config import ModelShape, TrainConfig
from acceptability.core.errors import run_cli
from acceptability.core.params import load_params, section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--pretrained", type=Path, default=Path("models/pretrained"))
    parser.add_argument("--tokenized", type=Path, default=Path("data/tokenized"))
    parser.add_argument("--raw", type=Path, default=Path("data/raw"))
    parser.add_argument("--out", type=Path, default=Path("models/model"))
    parser.add_argument("--checkpoints", type=Path, default=Path("models/checkpoints"), help="resumable epochs")
    parser.add_argument("--live-dir", type=Path, default=Path("metrics/train"))
    args = parser.parse_args()
    params = load_params(args.params)
    # Built and checked once, before torch and Lightning are even imported: a typo costs a second, not a run.
    model, config = (
        ModelShape.from_section(section(params, "model")),
        TrainConfig.from_section(section(params, "train")),
    )

    from acceptability.model.training import TrainPaths, train

    paths = TrainPaths(args.pretrained, args.tokenized, args.raw, args.out, args.checkpoints, args.live_dir)
    result = train(model, config, paths)
    picked = f"epoch {result['selected_epoch']} of {result['epochs_run']}, selected on {result['selected_on']}"
    logged = [(split, result[f"{split}_mcc"]) for split in ("calibration", "val")]
    scores = [f"{split} {value:.4f}" for split, value in logged if value is not None]
    print(f"{picked}: MCC {', '.join(scores) or 'not logged'}")


if __name__ == "__main__":
    run_cli(main)

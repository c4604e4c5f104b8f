"""Stage `evaluate`: models/model/ on the validation split -> metrics/eval.json, predictions.csv, misclassified.csv,
and reliability/{calibrated,uncalibrated}.csv (the reliability diagram's bins).

Params: evaluate (batch_size).
"""

import argparse
from pathlib import Path

from acceptability.core.config import EvaluateConfig
from acceptability.core.errors import run_cli
from acceptability.core.params import load_params, section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model", type=Path, default=Path("models/model"))
    parser.add_argument("--tokenized", type=Path, default=Path("data/tokenized"))
    parser.add_argument("--raw", type=Path, default=Path("data/raw"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics"))
    args = parser.parse_args()
    cfg = EvaluateConfig.from_section(section(load_params(args.params), "evaluate"))

    from acceptability.model.evaluation import evaluate

    result = evaluate(args.model, args.tokenized, args.raw, args.metrics, cfg.batch_size)
    print(
        f"val/mcc {result['val']['mcc']:.4f} (in-domain {result['val_in_domain']['mcc']:.4f}, "
        f"out-of-domain {result['val_out_of_domain']['mcc']:.4f}) over {result['val']['n']} sentences; ECE "
        f"{result['calibration']['ece']:.3f} at temperature {result['calibration']['temperature']:.3f} "
        f"(uncalibrated {result['calibration']['ece_uncalibrated']:.3f})"
    )


if __name__ == "__main__":
    run_cli(main)

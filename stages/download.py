"""Stage `download`: CoLA to data/raw/ (train.csv, calibration.csv, validation.csv), the pretrained model to
models/pretrained/.

Params: data.source, data.dir, data.hub_*, data.expected_rows, data.sha256, data.calibration_rows,
data.split_seed and the model.* pins.
Side files record which source was used: data/source.json and models/pretrained.json.
"""

import argparse
from pathlib import Path

from acceptability.core.atomic import atomic_path, write_json
from acceptability.core.config import DataSource, ModelSource
from acceptability.core.errors import run_cli
from acceptability.core.params import load_params, section
from acceptability.data.cola import hold_out, load_cola, write_split
from acceptability.data.pretrained import fetch_pretrained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--data-out", type=Path, default=Path("data/raw"))
    parser.add_argument("--data-record", type=Path, default=Path("data/source.json"))
    parser.add_argument("--model-out", type=Path, default=Path("models/pretrained"))
    parser.add_argument("--model-record", type=Path, default=Path("models/pretrained.json"))
    args = parser.parse_args()
    params = load_params(args.params)
    data_cfg, model_cfg = (
        DataSource.from_section(section(params, "data")),
        ModelSource.from_section(section(params, "model")),
    )

    cola = load_cola(data_cfg)
    # Temperature scaling is fitted on these rows: never trained on, and not the validation split we report.
    cola.splits["train"], cola.splits["calibration"] = hold_out(
        cola.splits["train"], data_cfg.calibration_rows, data_cfg.split_seed
    )
    with atomic_path(args.data_out) as folder:
        folder.mkdir()
        for split, frame in cola.splits.items():
            write_split(frame, folder / f"{split}.csv")
    cola.record["rows"] = {split: len(frame) for split, frame in cola.splits.items()}
    write_json(args.data_record, cola.record)
    print(f"CoLA from {cola.record['source']} ({cola.record['location']}): {cola.record['rows']}")

    with atomic_path(args.model_out) as folder:
        record = fetch_pretrained(model_cfg, folder)
    write_json(args.model_record, record)
    print(
        f"model {record['model_name_or_path']} from {record['source']} ({record['location']}), "
        f"sha256 {record['sha256'][:12]}… {'verified' if record['sha256_verified'] else 'recorded, no pin'}"
    )


if __name__ == "__main__":
    run_cli(main)

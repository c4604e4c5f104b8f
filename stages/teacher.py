"""Stage `teacher` (frozen): fine-tune teacher.model on data/raw/train.csv; its logits to data/teacher/.

Params: teacher.*, data.max_seq_length. `dvc repro` skips it (frozen: true in dvc.yaml); docs/experiments.md says how
to re-run it, and what it costs on 2 CPU cores; a GPU takes minutes.
"""

import argparse
from pathlib import Path

from acceptability.core.errors import run_cli
from acceptability.core.params import load_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--raw", type=Path, default=Path("data/raw"))
    parser.add_argument("--out", type=Path, default=Path("data/teacher"))
    parser.add_argument("--live-dir", type=Path, default=Path("metrics/teacher"))
    args = parser.parse_args()
    params = load_params(args.params)

    from acceptability.model.teacher import run_teacher, teacher_sections

    teacher_sections(params)  # checked before torch is imported
    run_teacher(params, args.raw, args.out, args.live_dir)


if __name__ == "__main__":
    run_cli(main)

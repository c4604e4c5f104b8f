"""Stage `export`: models/model/ -> models/onnx/ (model.onnx fp32, model.int8.onnx, tokenizer.json, model_card.json).

Params: export.*, data.max_seq_length, model.name. int8's smoothing factors come from train rows. Gates: fp32 logits
within export.max_abs_logit_diff of torch on the whole validation set (else the stage fails); int8 MCC within
export.max_int8_mcc_drop of fp32 on this CPU and under qemu as each of export.emulated_isas (else the card marks int8
as not for serving; once this CPU refuses it, qemu is not run). The card carries a golden set that servers check
themselves with. Writes metrics/export.json, with each variant's calibration error.
"""

import argparse
from pathlib import Path

from acceptability.core.atomic import write_json
from acceptability.core.config import ExportConfig, max_seq_length
from acceptability.core.errors import run_cli
from acceptability.core.params import load_params, section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model", type=Path, default=Path("models/model"))
    parser.add_argument("--tokenized", type=Path, default=Path("data/tokenized"))
    parser.add_argument("--raw", type=Path, default=Path("data/raw"), help="for the golden set's sentences")
    parser.add_argument("--out", type=Path, default=Path("models/onnx"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/export.json"))
    args = parser.parse_args()
    params = load_params(args.params)
    cfg, max_len = ExportConfig.from_section(section(params, "export")), max_seq_length(params)
    model_name = section(params, "model")["name"]

    from acceptability.data.encode import load_encoded
    from acceptability.export.build import export_onnx, validation_inputs

    arrays, sentences = validation_inputs(args.tokenized, args.raw)
    splits = {"train": load_encoded(args.tokenized / "train.npz"), "validation": arrays}
    result = export_onnx(args.model, splits, sentences, args.out, cfg, max_len, model_name)
    write_json(args.metrics, result)
    fp32, int8 = result["onnx_fp32"], result["onnx_int8"]
    verdict = "servable" if result["int8_servable"] else "NOT servable (the server falls back to fp32)"
    by_isa = ", ".join(f"{isa} {row['mcc']:.4f}" for isa, row in result["int8_by_isa"].items())
    print(
        f"fp32 max |logit diff| {result['fp32_max_abs_logit_diff']:.2e}; MCC fp32 {fp32['mcc']:.4f}, "
        f"int8 {by_isa} (agreement >= {result['int8_agreement']:.1%}): int8 {verdict}; "
        f"ECE fp32 {fp32['ece']:.3f} (uncalibrated {fp32['ece_uncalibrated']:.3f}), int8 {int8['ece']:.3f}"
    )


if __name__ == "__main__":
    run_cli(main)

"""Stage `export`: models/model/ -> models/onnx/ (model.onnx fp32, model.int8.onnx, tokenizer.json, model_card.json).

Params: export.*, data.max_seq_length. Gates: fp32 logits within export.max_abs_logit_diff of torch on the whole
validation set (else the stage fails); int8 MCC within export.max_int8_mcc_drop of fp32 (else the card marks int8
as not for serving). Writes metrics/export.json.
"""

import argparse
import json
import shutil
from pathlib import Path

from acceptability.atomic import atomic_path, write_json
from acceptability.errors import UserError, run_cli
from acceptability.params import load_params, section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model", type=Path, default=Path("models/model"))
    parser.add_argument("--tokenized", type=Path, default=Path("data/tokenized"))
    parser.add_argument("--out", type=Path, default=Path("models/onnx"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/export.json"))
    args = parser.parse_args()
    params = load_params(args.params)
    cfg, max_len = section(params, "export"), int(section(params, "data")["max_seq_length"])

    import onnxruntime as ort

    from acceptability import LABELS
    from acceptability.encode import load_encoded
    from acceptability.export import export_fp32, fuse, quantize_int8
    from acceptability.hashing import sha256_file
    from acceptability.parity import onnx_logits, torch_logits, variant_metrics
    from acceptability.predictor import CARD, VARIANT_FILES

    arrays = load_encoded(args.tokenized / "validation.npz")
    config = json.loads((args.model / "config.json").read_text())
    with atomic_path(args.out) as folder:
        folder.mkdir()
        fp32 = folder / VARIANT_FILES["fp32"]
        model = export_fp32(args.model, fp32, int(cfg["opset"]))
        shutil.copyfile(args.model / "tokenizer.json", folder / "tokenizer.json")
        to_quantize = fp32
        if cfg["fuse"]:
            to_quantize = folder / "fused.tmp.onnx"
            fuse(fp32, to_quantize, config["num_attention_heads"], config["hidden_size"])
        quantize_int8(
            to_quantize, folder / VARIANT_FILES["int8"], bool(cfg["per_channel"]), bool(cfg.get("reduce_range", False))
        )
        if cfg["fuse"]:
            to_quantize.unlink()

        sessions = {
            variant: ort.InferenceSession(str(folder / name), providers=["CPUExecutionProvider"])
            for variant, name in VARIANT_FILES.items()
        }
        # Parity on padded batches (this also checks the dynamic axes), then the metrics at batch 1: int8's
        # activation scales are computed per call, so a sentence's own call is what it gets when served alone.
        max_diff = float(abs(onnx_logits(sessions["fp32"], arrays, 64) - torch_logits(model, arrays, 64)).max())
        if max_diff > float(cfg["max_abs_logit_diff"]):
            raise UserError(
                f"parity gate: ONNX fp32 logits differ from torch by up to {max_diff:.2e} on the "
                f"validation set; export.max_abs_logit_diff allows {cfg['max_abs_logit_diff']}"
            )
        logits = {variant: onnx_logits(session, arrays, 1) for variant, session in sessions.items()}
        labels = arrays["labels"]
        metrics = {variant: variant_metrics(labels, values) for variant, values in logits.items()}
        drop = metrics["fp32"]["mcc"] - metrics["int8"]["mcc"]
        agreement = float((logits["fp32"].argmax(1) == logits["int8"].argmax(1)).mean())
        int8_servable = drop <= float(cfg["max_int8_mcc_drop"])
        gates = {
            "fp32_max_abs_logit_diff": max_diff,
            "int8_mcc_drop": drop,
            "int8_agreement": agreement,
            "int8_servable": int8_servable,
        }
        card = {
            "labels": list(LABELS),
            "max_seq_length": max_len,
            "inputs": ["input_ids", "attention_mask"],
            "output": "logits",
            "opset": int(cfg["opset"]),
            "int8": {
                "fused_before_quantizing": bool(cfg["fuse"]),
                "per_channel": bool(cfg["per_channel"]),
                "reduce_range": bool(cfg.get("reduce_range")),
                "servable": int8_servable,
            },
            "params": {"export": cfg, "model": section(params, "model")["name"]},
            "metrics": metrics,
            "gates": gates,
            "sha256": {name: sha256_file(folder / name) for name in [*VARIANT_FILES.values(), "tokenizer.json"]},
        }
        (folder / CARD).write_text(json.dumps(card, indent=2) + "\n")
    write_json(args.metrics, {"onnx_fp32": metrics["fp32"], "onnx_int8": metrics["int8"], **gates})
    verdict = "servable" if int8_servable else "NOT servable (the server falls back to fp32)"
    print(
        f"fp32 max |logit diff| {max_diff:.2e}; MCC fp32 {metrics['fp32']['mcc']:.4f}, "
        f"int8 {metrics['int8']['mcc']:.4f} (agreement {agreement:.1%}): int8 {verdict}"
    )


if __name__ == "__main__":
    run_cli(main)

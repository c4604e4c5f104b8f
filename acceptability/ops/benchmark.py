"""One benchmark variant in its own process, so cold start and peak RSS are that variant's alone.

    python -m acceptability.ops.benchmark onnx_int8 config.json   # prints one JSON object

Module-level imports stay in the standard library: the cold start below includes importing the runtime.
"""

import json
import resource
import sys
import time
from pathlib import Path

START = time.perf_counter()
VARIANTS = ("torch_fp32", "onnx_fp32", "onnx_int8")


class TorchRunner:
    """Torch eager fp32 with the served tokenizer. Batches are padded to their longest sentence: torch pays more per
    call than ONNX Runtime, so this is faster for it than the predictor's one call per length (docs/decisions.md)."""

    def __init__(self, model_dir: str, onnx_dir: str, threads: int):
        import torch

        from acceptability.export.isa import pad
        from acceptability.inference.predictor import read_card, served_tokenizer
        from acceptability.model.module import load_classifier

        if threads:
            torch.set_num_threads(threads)
        self.torch, self.pad = torch, pad
        self.model = load_classifier(model_dir).eval()
        folder = Path(onnx_dir)
        self.tokenizer = served_tokenizer(folder, read_card(folder))  # no ONNX session in this process

    def probabilities(self, sentences: list[str]):
        input_ids, attention_mask = self.pad([encoding.ids for encoding in self.tokenizer.encode_batch(sentences)])
        with self.torch.inference_mode():
            logits = self.model(self.torch.from_numpy(input_ids), self.torch.from_numpy(attention_mask))
        return self.torch.softmax(logits, dim=-1).numpy()


def load_runner(variant: str, config: dict):
    if variant == "torch_fp32":
        return TorchRunner(config["model_dir"], config["onnx_dir"], config["threads"])
    from acceptability.inference.predictor import Predictor

    return Predictor.load(config["onnx_dir"], variant.removeprefix("onnx_"), threads=config["threads"])


def length_buckets(runner, sentences: list[str], batch_size: int) -> list[list[int]]:
    """Batches of indices of similar token length, so padding costs little."""
    lengths = [len(e.ids) for e in runner.tokenizer.encode_batch(sentences)]
    order = sorted(range(len(sentences)), key=lengths.__getitem__)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def measure(variant: str, config: dict) -> dict:
    import numpy as np

    from acceptability.core.scores import mcc, predicted_labels

    runner = load_runner(variant, config)
    cold_start = time.perf_counter() - START
    sentences, labels = config["sentences"], np.asarray(config["labels"])

    for sentence in sentences[: config["warmup"]]:
        runner.probabilities([sentence])
    timings, p_single = [], np.zeros(len(sentences))
    for _ in range(config["repetitions"]):
        for i, sentence in enumerate(sentences):
            begin = time.perf_counter()
            p_single[i] = runner.probabilities([sentence])[0, 1]
            timings.append(time.perf_counter() - begin)
    latency = np.asarray(timings) * 1000

    buckets = length_buckets(runner, sentences, config["batch_size"])
    p_batched = np.zeros(len(sentences))
    begin = time.perf_counter()
    for _ in range(config["repetitions"]):
        for batch in buckets:
            p_batched[batch] = runner.probabilities([sentences[i] for i in batch])[:, 1]
    elapsed = time.perf_counter() - begin
    return {
        "latency_ms_p50": float(np.percentile(latency, 50)),
        "latency_ms_p95": float(np.percentile(latency, 95)),
        "latency_ms_p99": float(np.percentile(latency, 99)),
        "throughput_sps_b32": len(sentences) * config["repetitions"] / elapsed,
        "cold_start_s": cold_start,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        # int8's activation scales are per call, so its predictions depend on the batch: report both.
        "mcc": mcc(labels, predicted_labels(p_single)),
        "mcc_b32": mcc(labels, predicted_labels(p_batched)),
    }


if __name__ == "__main__":
    variant, config_path = sys.argv[1], sys.argv[2]
    if variant not in VARIANTS:
        sys.exit(f"variant must be one of {', '.join(VARIANTS)}; found {variant!r}")
    with open(config_path) as stream:
        print(json.dumps(measure(variant, json.load(stream))))

"""Training speed: the project's Lightning pipeline against a minimal plain PyTorch loop.

Both fine-tune the same pretrained model on the same tokenized train split for the same number of optimizer
steps, with the same batch size and threads, and report sentences per second over the timed steps (after a
few warm-up steps):

    python -m acceptability.ops.train_benchmark --out metrics/train_benchmark.json      # or: make train-benchmark

The plain loop is what a tutorial writes: shuffled batches padded to their longest row, torch's default AdamW,
and the loss read back (`loss.item()`) every step for logging.
"""

import argparse
import json
import time
from pathlib import Path

import lightning as L
import torch

from acceptability.core.atomic import write_json
from acceptability.core.config import ModelShape, TrainConfig
from acceptability.core.errors import run_cli
from acceptability.core.machine import describe as describe_machine
from acceptability.core.params import load_params, section

VARIANTS = ("pipeline", "plain_loop", "pipeline_bf16", "pipeline_compile")


def plain_loop_sps(
    pretrained: Path, tokenized: Path, model: ModelShape, train: TrainConfig, steps: int, warmup: int
) -> float:
    from torch.utils.data import DataLoader

    from acceptability.data.encode import load_encoded
    from acceptability.model.datamodule import EncodedSplit, PadCollator
    from acceptability.model.module import dropout_options, load_classifier

    torch.manual_seed(train.seed)
    # The plain Hugging Face model ([CLS] head, its own loss) on the same encoder layers and dropout as the pipeline's.
    classifier = load_classifier(pretrained, "cls", model.num_layers, **dropout_options(train.dropout)).model
    classifier.train()
    pad_id = json.loads((tokenized / "meta.json").read_text())["pad_token_id"]
    loader = DataLoader(
        EncodedSplit(load_encoded(tokenized / "train.npz")),
        batch_size=train.batch_size,
        shuffle=True,
        collate_fn=PadCollator(pad_id),
        drop_last=True,
    )
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=train.learning_rate, weight_decay=train.weight_decay)
    losses, sentences, started, step = [], 0, 0.0, 0
    while step < warmup + steps:
        for batch in loader:
            if step == warmup:
                started = time.perf_counter()
            loss = classifier(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]
            ).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
            sentences += len(batch["labels"]) if step >= warmup else 0
            step += 1
            if step == warmup + steps:
                break
    return sentences / (time.perf_counter() - started)


def pipeline_sps(
    model: ModelShape,
    train: TrainConfig,
    pretrained: Path,
    tokenized: Path,
    steps: int,
    warmup: int,
    precision: str,
    compile_model: bool,
    live_dir: Path,
) -> float:
    from acceptability.model.tracking import make_loggers
    from acceptability.model.training import build

    L.seed_everything(train.seed, verbose=False)
    datamodule, module = build(model, train, pretrained, tokenized)
    if compile_model:
        module.classifier = torch.compile(module.classifier, dynamic=True)
    clock = StepClock(warmup)
    loggers = make_loggers(live_dir, {}, wandb=False)  # the DVCLive logging the real run pays for
    trainer = L.Trainer(
        max_steps=warmup + steps,
        accelerator="cpu",
        devices=1,
        precision=precision,
        deterministic=train.deterministic,
        logger=loggers,
        callbacks=[clock],
        limit_val_batches=0,
        num_sanity_val_steps=0,
        enable_checkpointing=False,
        log_every_n_steps=train.log_every_n_steps,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=datamodule)
    return clock.sentences / clock.seconds


class StepClock(L.Callback):
    """Times the training batches after the first `warmup` optimizer steps."""

    def __init__(self, warmup: int):
        self.warmup, self.sentences, self.started, self.seconds = warmup, 0, None, 0.0

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == self.warmup and self.started is None:
            self.started = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self.started is not None:
            self.sentences += len(batch["labels"])
            self.seconds = time.perf_counter() - self.started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--pretrained", type=Path, default=Path("models/pretrained"))
    parser.add_argument("--tokenized", type=Path, default=Path("data/tokenized"))
    parser.add_argument("--out", type=Path, default=Path("metrics/train_benchmark.json"))
    parser.add_argument("--steps", type=int, default=100, help="timed optimizer steps per variant")
    parser.add_argument("--warmup-steps", type=int, default=10)
    parser.add_argument(
        "--variants", default="pipeline,plain_loop", help=f"comma-separated, from {', '.join(VARIANTS)}"
    )
    args = parser.parse_args()
    variants = args.variants.split(",")
    if unknown := set(variants) - set(VARIANTS):
        parser.error(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    if not {"pipeline", "plain_loop"} <= set(variants):
        parser.error("--variants must include pipeline and plain_loop: the ratio compares them")
    if args.steps < 1 or args.warmup_steps < 0:
        parser.error("--steps must be >= 1 and --warmup-steps >= 0")
    params = load_params(args.params)
    model, train = ModelShape.from_section(section(params, "model")), TrainConfig.from_section(section(params, "train"))
    if train.num_threads:
        torch.set_num_threads(train.num_threads)

    import tempfile

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for variant in variants:
            print(f"{variant}: {args.warmup_steps} warm-up + {args.steps} timed steps", flush=True)
            if variant == "plain_loop":
                sps = plain_loop_sps(args.pretrained, args.tokenized, model, train, args.steps, args.warmup_steps)
            else:
                sps = pipeline_sps(
                    model,
                    train,
                    args.pretrained,
                    args.tokenized,
                    args.steps,
                    args.warmup_steps,
                    "bf16-mixed" if variant == "pipeline_bf16" else "32-true",
                    variant == "pipeline_compile",
                    Path(tmp) / variant,
                )
            results[variant] = round(sps, 2)
            print(f"{variant}: {sps:.1f} sentences/s", flush=True)
    report = {
        "pipeline_sps": results["pipeline"],
        "plain_loop_sps": results["plain_loop"],
        "ratio": round(results["pipeline"] / results["plain_loop"], 3),
        "steps": args.steps,
        "batch_size": train.batch_size,
        "warmup_steps": args.warmup_steps,
        "variants_sps": results,
        "threads": torch.get_num_threads(),
        "machine": {**describe_machine(), "torch": torch.__version__},
    }
    write_json(args.out, report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    run_cli(main)

"""train(params) -> metrics: the whole training run, callable from the stage script and from tests."""

import json
import logging
import os
import shutil
import signal
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException

from acceptability.atomic import atomic_path, write_json
from acceptability.cola import read_split
from acceptability.console import LINE_EVERY_S, on_terminal
from acceptability.datamodule import ColaDataModule
from acceptability.encode import load_encoded
from acceptability.hashing import sha256_file
from acceptability.interrupt import StopOnSigint
from acceptability.module import AcceptabilityClassifier, balanced_class_weights
from acceptability.params import check_model, check_train, section
from acceptability.predict import predict_acceptable
from acceptability.pretrained import MODEL_FILES, WEIGHTS
from acceptability.tracking import log_wandb_results, make_loggers, wandb_logger


@dataclass
class TrainPaths:
    pretrained: Path = Path("models/pretrained")
    tokenized: Path = Path("data/tokenized")
    raw: Path = Path("data/raw")
    out: Path = Path("models/model")
    checkpoints: Path = Path("models/checkpoints")
    dvclive: Path = Path("metrics/train")


RUN_RECORD = "run.json"
MODEL_KEYS = ("name", "pooling", "num_layers")  # what training reads of the `model` section (dvc.yaml lists them)


class EpochLines(L.Callback):
    """The progress bar's replacement off a terminal: a line per epoch with its metrics, and one every LINE_EVERY_S
    within an epoch."""

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.start = self.last = time.monotonic()

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        if trainer.is_global_zero and time.monotonic() - self.last >= LINE_EVERY_S:
            self.last = time.monotonic()
            print(
                f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}: batch {batch_idx + 1}/"
                f"{trainer.num_training_batches}",
                file=sys.stderr,
                flush=True,
            )

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.is_global_zero:  # validation has run: its metrics are in
            shown = ", ".join(f"{name} {float(value):.4f}" for name, value in sorted(trainer.callback_metrics.items()))
            print(
                f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs} ({time.monotonic() - self.start:.0f} s): "
                f"{shown}",
                file=sys.stderr,
                flush=True,
            )


class NoTips(logging.Filter):
    """Lightning advertises its cloud logger on every run; the rest of its rank-zero messages stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("💡 Tip")


logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(NoTips())


def build_trainer(
    train: dict, paths: TrainPaths, loggers: list, extra_callbacks: tuple = ()
) -> tuple[L.Trainer, L.Callback]:
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, TQDMProgressBar

    warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")  # our run.json
    # Lightning 2.6's own pytree helper on torch 2.13: a deprecation inside Lightning that users cannot act on.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    # last.ckpt is written at every epoch's end: an interrupted run resumes from it (see resume_point).
    checkpoint = ModelCheckpoint(
        dirpath=paths.checkpoints, filename="best", monitor="val/mcc", mode="max", save_top_k=1, save_last=True
    )
    stopping = EarlyStopping(monitor="val/mcc", mode="max", patience=int(train["early_stopping_patience"]))
    trainer = L.Trainer(
        max_epochs=int(train["num_train_epochs"]),
        accelerator=train.get("accelerator", "auto"),
        devices=train.get("devices", 1),
        num_nodes=int(train.get("num_nodes", 1)),
        strategy=train.get("strategy", "auto"),
        precision=train.get("precision", "32-true"),
        deterministic=bool(train.get("deterministic", True)),
        logger=loggers,
        gradient_clip_val=train.get("gradient_clip_val"),
        gradient_clip_algorithm="norm",  # null: no clipping
        callbacks=[
            checkpoint,
            stopping,
            TQDMProgressBar(refresh_rate=10) if on_terminal() else EpochLines(),
            *extra_callbacks,
        ],
        # LengthGroupedBatches shards the batches itself; validation runs in full on every rank.
        use_distributed_sampler=False,
        log_every_n_steps=int(train.get("log_every_n_steps", 10)),
        num_sanity_val_steps=0,
        default_root_dir=paths.checkpoints,
        enable_progress_bar=on_terminal(),
        enable_model_summary=False,
    )
    return trainer, checkpoint


def is_launching_process() -> bool:
    """True in the process the user started (global rank 0); Lightning's DDP launcher sets these for the others."""
    return int(os.environ.get("NODE_RANK", 0)) == 0 and int(os.environ.get("LOCAL_RANK", 0)) == 0


def run_fingerprint(model_cfg: dict, train_cfg: dict, paths: TrainPaths) -> str:
    """What a checkpoint must have been trained on to be resumed: the params and the input files."""
    inputs = {
        "model": model_cfg,
        "train": train_cfg,
        "train.npz": sha256_file(paths.tokenized / "train.npz"),
        "pretrained": sha256_file(paths.pretrained / WEIGHTS),
    }
    return json.dumps(inputs, sort_keys=True, default=str)


def resume_point(paths: TrainPaths, fingerprint: str) -> Path | None:
    """last.ckpt of an interrupted run with the same params and inputs, else None (and a clean folder)."""
    last, record = paths.checkpoints / "last.ckpt", paths.checkpoints / RUN_RECORD
    same_run = record.is_file() and json.loads(record.read_text()).get("fingerprint") == fingerprint
    if same_run and last.is_file():
        return last
    if is_launching_process():  # the other DDP ranks start after this and must not delete its record
        shutil.rmtree(paths.checkpoints, ignore_errors=True)
        write_json(record, {"fingerprint": fingerprint})
    return None


def save_model(module: AcceptabilityClassifier, pretrained: Path, out: Path) -> None:
    """save_pretrained (safetensors) plus the tokenizer files, so the folder serves on its own."""
    with atomic_path(out) as folder:
        module.classifier.save_pretrained(folder)
        for name in MODEL_FILES:
            if name not in ("config.json", WEIGHTS) and (pretrained / name).is_file():
                shutil.copyfile(pretrained / name, folder / name)


def build(
    model_cfg: dict, train_cfg: dict, pretrained: Path, tokenized: Path
) -> tuple[ColaDataModule, AcceptabilityClassifier]:
    """The data module and the LightningModule that the params describe (shared with train_benchmark)."""
    meta = json.loads((tokenized / "meta.json").read_text())
    datamodule = ColaDataModule(
        tokenized,
        int(train_cfg["batch_size"]),
        int(train_cfg["eval_batch_size"]),
        meta["pad_token_id"],
        int(train_cfg.get("num_workers", 0)),
        int(train_cfg["seed"]),
    )
    head_lr = train_cfg.get("head_learning_rate")
    weights = None
    if train_cfg.get("class_weights") == "balanced":
        weights = balanced_class_weights(load_encoded(tokenized / "train.npz")["labels"])
    module = AcceptabilityClassifier(
        str(pretrained),
        float(train_cfg["learning_rate"]),
        float(train_cfg["weight_decay"]),
        float(train_cfg["warmup_ratio"]),
        pooling=model_cfg.get("pooling", "cls"),
        head_learning_rate=float(head_lr) if head_lr else None,
        layerwise_lr_decay=float(train_cfg.get("layerwise_lr_decay", 1.0)),
        dropout=train_cfg.get("dropout"),
        num_layers=model_cfg.get("num_layers"),
        class_weights=weights,
        label_smoothing=float(train_cfg.get("label_smoothing", 0.0)),
    )
    return datamodule, module


def train(params: dict, paths: TrainPaths | None = None) -> dict:
    """Fine-tune the pretrained model on the tokenized train split; keep the epoch with the best val/mcc."""
    paths = paths or TrainPaths()
    model_cfg, train_cfg = section(params, "model"), section(params, "train")
    check_model(model_cfg)
    check_train(train_cfg)
    model_cfg = {key: model_cfg.get(key) for key in MODEL_KEYS}  # the rest is the download stage's

    L.seed_everything(int(train_cfg["seed"]), workers=True, verbose=False)
    if train_cfg.get("num_threads"):
        torch.set_num_threads(int(train_cfg["num_threads"]))
    datamodule, module = build(model_cfg, train_cfg, paths.pretrained, paths.tokenized)
    resume = resume_point(paths, run_fingerprint(model_cfg, train_cfg, paths))
    if resume:
        print(f"resuming from {resume} (an interrupted run with the same params and data)", file=sys.stderr)
    loggers = make_loggers(paths.dvclive, {"model": model_cfg, "train": train_cfg}, resume=bool(resume))
    sigint = StopOnSigint()
    trainer, checkpoint = build_trainer(train_cfg, paths, loggers, (sigint,))
    try:
        with sigint.installed():
            trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
    except BaseException as stop:
        if (paths.checkpoints / "last.ckpt").is_file():
            print(
                f"training stopped; {paths.checkpoints}/last.ckpt holds the last finished epoch: "
                "run the same command to resume from it",
                file=sys.stderr,
            )
        if isinstance(stop, SIGTERMException):  # a SystemExit with code 0: DVC would take the stage as done
            raise SystemExit(128 + signal.SIGTERM) from None
        raise
    result = {
        "best_val_mcc": float(checkpoint.best_model_score),
        "epochs_run": trainer.current_epoch,
        "global_steps": trainer.global_step,
    }
    if not trainer.is_global_zero:
        return result

    # Our own checkpoint, read back as plain tensors and primitives (no arbitrary unpickling).
    state = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)["state_dict"]
    module.load_state_dict(state)
    save_model(module, paths.pretrained, paths.out)

    wandb = wandb_logger(loggers)
    if wandb is not None:  # the best model's confusion matrix and mistakes; the evaluate stage writes its own
        p_acceptable = predict_acceptable(module.cpu(), datamodule.val_dataloader(), desc="best model on validation")
        log_wandb_results(wandb, read_split(paths.raw / "validation.csv"), p_acceptable)
    for logger in loggers:
        logger.finalize("success")
    shutil.rmtree(paths.checkpoints, ignore_errors=True)  # finished: nothing to resume
    return result

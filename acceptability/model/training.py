"""train(model, cfg, paths) -> metrics: the whole training run, callable from the stage script and from tests."""

import json
import logging
import os
import shutil
import signal
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException

from acceptability.core.atomic import atomic_path, write_json
from acceptability.core.config import ModelShape, TrainConfig
from acceptability.core.console import LINE_EVERY_S, on_terminal
from acceptability.data.cola import read_split
from acceptability.data.encode import load_encoded
from acceptability.data.pretrained import MODEL_FILES, WEIGHTS
from acceptability.inference.hashing import sha256_file
from acceptability.model.averaging import weight_averaging
from acceptability.model.datamodule import ColaDataModule
from acceptability.model.interrupt import StopOnSigint
from acceptability.model.module import SELECT_ON, AcceptabilityClassifier, balanced_class_weights
from acceptability.model.predict import predict_acceptable
from acceptability.model.tracking import log_wandb_results, make_loggers, wandb_logger


@dataclass(frozen=True)
class TrainPaths:
    pretrained: Path
    tokenized: Path
    raw: Path
    out: Path
    checkpoints: Path
    dvclive: Path


RUN_RECORD = "run.json"


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


class EpochHistory(L.Callback):
    """Every epoch's logged metrics, so the report can give validation MCC at the epoch that was selected."""

    def __init__(self) -> None:
        self.epochs: dict[int, dict[str, float]] = {}

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
        self.epochs[trainer.current_epoch] = metrics


def build_trainer(
    train: TrainConfig, paths: TrainPaths, loggers: list, extra_callbacks: tuple = (), select: bool = True
) -> tuple[L.Trainer, L.Callback]:
    """`select`: keep the epoch with the best SELECT_ON and stop early on it; without held-out rows, the last epoch."""
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, TQDMProgressBar

    warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")  # our run.json
    # Lightning 2.6's own pytree helper on torch 2.13: a deprecation inside Lightning that users cannot act on.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    # last.ckpt is written at every epoch's end: an interrupted run resumes from it (see resume_point).
    checkpoint = ModelCheckpoint(
        dirpath=paths.checkpoints,
        filename="best",
        monitor=SELECT_ON if select else None,
        mode="max",
        save_top_k=1,
        save_last=True,
    )
    stopping = [EarlyStopping(monitor=SELECT_ON, mode="max", patience=train.early_stopping_patience)]
    trainer = L.Trainer(
        max_epochs=train.num_train_epochs,
        accelerator=train.accelerator,
        devices=train.devices,
        num_nodes=train.num_nodes,
        strategy=train.strategy,
        precision=train.precision,
        deterministic=train.deterministic,
        logger=loggers,
        gradient_clip_val=train.gradient_clip_val,
        gradient_clip_algorithm="norm",  # null: no clipping
        callbacks=[
            checkpoint,
            *(stopping if select else []),
            TQDMProgressBar(refresh_rate=10) if on_terminal() else EpochLines(),
            *weight_averaging(train),
            *extra_callbacks,
        ],
        # LengthGroupedBatches shards the batches itself; validation runs in full on every rank.
        use_distributed_sampler=False,
        log_every_n_steps=train.log_every_n_steps,
        num_sanity_val_steps=0,
        default_root_dir=paths.checkpoints,
        enable_progress_bar=on_terminal(),
        enable_model_summary=False,
    )
    return trainer, checkpoint


def is_launching_process() -> bool:
    """True in the process the user started (global rank 0); Lightning's DDP launcher sets these for the others."""
    return int(os.environ.get("NODE_RANK", 0)) == 0 and int(os.environ.get("LOCAL_RANK", 0)) == 0


def run_fingerprint(model: ModelShape, train: TrainConfig, paths: TrainPaths) -> str:
    """What a checkpoint must have been trained on to be resumed: the params and the input files."""
    inputs = {
        "model": asdict(model),
        "train": asdict(train),
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
    model: ModelShape, train: TrainConfig, pretrained: Path, tokenized: Path
) -> tuple[ColaDataModule, AcceptabilityClassifier]:
    """The data module and the LightningModule that the configs describe (shared with train_benchmark)."""
    datamodule = ColaDataModule(tokenized, train, json.loads((tokenized / "meta.json").read_text())["pad_token_id"])
    weights = None
    if train.class_weights == "balanced":
        weights = balanced_class_weights(load_encoded(tokenized / "train.npz")["labels"])
    return datamodule, AcceptabilityClassifier(pretrained, model, train, weights)


def calibrate(module: AcceptabilityClassifier, tokenized: Path, batch_size: int) -> float:
    """Fit the temperature on the held-out calibration split (none: `1.0`) and set it on the classifier."""
    from acceptability.inference.calibration import fit_temperature
    from acceptability.model.datamodule import split_loader
    from acceptability.model.predict import predict_logits

    path = tokenized / "calibration.npz"
    if not path.is_file() or len(load_encoded(path)["labels"]) == 0:
        return 1.0
    pad = json.loads((tokenized / "meta.json").read_text())["pad_token_id"]
    logits = predict_logits(module.classifier, split_loader(path, pad, batch_size), "calibration")
    temperature = fit_temperature(logits, load_encoded(path)["labels"])
    module.classifier.set_temperature(temperature)
    return temperature


def kept_without_choice(cfg: TrainConfig) -> str:
    first, last = cfg.first_averaged_epoch(), cfg.num_train_epochs
    if first is None:
        return "the last epoch (no calibration rows)"
    return f"the mean of the weights of epoch{'' if first == last else f's {first} to'} {last}"


def train(model: ModelShape, cfg: TrainConfig, paths: TrainPaths) -> dict:
    """Fine-tune the pretrained model on the tokenized train split; keep the epoch with the best SELECT_ON."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    datamodule, module = build(model, cfg, paths.pretrained, paths.tokenized)
    resume = resume_point(paths, run_fingerprint(model, cfg, paths))
    if resume:
        print(f"resuming from {resume} (an interrupted run with the same params and data)", file=sys.stderr)
    loggers = make_loggers(paths.dvclive, {"model": asdict(model), "train": asdict(cfg)}, resume=bool(resume))
    sigint, history = StopOnSigint(), EpochHistory()
    select = datamodule.has_calibration and cfg.average_last_epochs is None
    trainer, checkpoint = build_trainer(cfg, paths, loggers, (sigint, history), select)
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
    result = {"epochs_run": trainer.current_epoch, "global_steps": trainer.global_step}
    if not trainer.is_global_zero:
        return result

    # Our own checkpoint, read back as plain tensors and primitives (no arbitrary unpickling).
    best = checkpoint.best_model_path or checkpoint.last_model_path  # no monitor: the last epoch
    saved = torch.load(best, map_location="cpu", weights_only=True)
    module.load_state_dict(saved["state_dict"])
    selected = history.epochs.get(saved["epoch"], {})
    result.update(
        selected_epoch=saved["epoch"] + 1,
        selected_on=SELECT_ON if select else kept_without_choice(cfg),
        calibration_mcc=selected.get(SELECT_ON),
        val_mcc=selected.get("val/mcc"),
    )
    result["calibration_temperature"] = calibrate(module.cpu(), paths.tokenized, cfg.eval_batch_size)
    save_model(module, paths.pretrained, paths.out)

    wandb = wandb_logger(loggers)
    if wandb is not None:  # the best model's confusion matrix and mistakes; the evaluate stage writes its own
        p_acceptable = predict_acceptable(module.cpu(), datamodule.validation_loader(), desc="the model on validation")
        log_wandb_results(wandb, read_split(paths.raw / "validation.csv"), p_acceptable)
    for logger in loggers:
        logger.finalize("success")
    if wandb is not None:  # so that a second train() here (the teacher's next seed) starts a W&B run of its own
        wandb.experiment.finish()
    shutil.rmtree(paths.checkpoints, ignore_errors=True)  # finished: nothing to resume
    return result

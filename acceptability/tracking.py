"""Experiment trackers: DVCLive always, Weights & Biases offline unless a key is given and online is asked for."""

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from acceptability import LABELS

WANDB_MODES = ("offline", "online", "disabled")


def wandb_mode(requested: str) -> str:
    if requested not in WANDB_MODES:
        from acceptability.errors import UserError

        raise UserError(f"params.yaml: tracking.wandb must be one of {', '.join(WANDB_MODES)}; found {requested!r}")
    if requested == "online" and not os.environ.get("WANDB_API_KEY"):
        print("tracking.wandb=online but WANDB_API_KEY is not set: W&B runs offline", file=sys.stderr)
        return "offline"
    return requested


def make_loggers(tracking: dict, dvclive_dir: Path, run_config: dict, resume: bool = False) -> list:
    from dvclive.lightning import DVCLiveLogger

    # The pipeline declares these files in dvc.yaml itself, so DVCLive must not write its own dvc.yaml
    # or make experiments from inside a stage.
    # resume continues the curves of an interrupted run instead of starting them again.
    loggers = [DVCLiveLogger(dir=str(dvclive_dir), save_dvc_exp=False, dvcyaml=False, resume=resume)]
    mode = wandb_mode(tracking.get("wandb", "offline"))
    if mode != "disabled":
        from lightning.pytorch.loggers import WandbLogger

        loggers.append(WandbLogger(project=tracking.get("wandb_project", "cola-acceptability"), mode=mode,
                                   save_dir=".", config=run_config))
    return loggers


def misclassified(frame: pd.DataFrame, p_acceptable: np.ndarray) -> pd.DataFrame:
    """The validation rows the model gets wrong, most confident mistakes first."""
    predictions = (p_acceptable >= 0.5).astype(int)
    confidence = np.where(predictions == 1, p_acceptable, 1 - p_acceptable)
    wrong = frame.assign(prediction=predictions, confidence=confidence.round(4))
    wrong = wrong[wrong["prediction"] != wrong["label"]]
    return wrong.sort_values("confidence", ascending=False)[
        ["idx", "sentence", "label", "prediction", "confidence", "domain"]]


def wandb_logger(loggers: list):
    """The W&B logger among `loggers`, or None when W&B is disabled."""
    from lightning.pytorch.loggers import WandbLogger

    return next((logger for logger in loggers if isinstance(logger, WandbLogger)), None)


def log_wandb_results(logger, frame: pd.DataFrame, p_acceptable: np.ndarray) -> None:
    """Confusion matrix and the table of misclassified validation sentences, for the W&B run."""
    import wandb

    predictions = (p_acceptable >= 0.5).astype(int)
    wrong = misclassified(frame, p_acceptable)
    names = dict(enumerate(LABELS))
    logger.experiment.log({
        "val/confusion_matrix": wandb.plot.confusion_matrix(
            y_true=frame["label"].tolist(), preds=predictions.tolist(), class_names=list(LABELS)),
        "val/misclassified": wandb.Table(dataframe=wrong.replace({"label": names, "prediction": names})),
    })

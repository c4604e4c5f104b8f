"""Experiment trackers: DVCLive always; Weights & Biases offline unless WANDB_API_KEY is set (WANDB_MODE decides)."""

import os
from pathlib import Path

import numpy as np
import pandas as pd

from acceptability import LABELS
from acceptability.core.scores import predicted_labels

WANDB_PROJECT = "cola-acceptability"


def wandb_mode() -> str:
    """W&B's own WANDB_MODE when set; else online with a WANDB_API_KEY, offline without. Not a param: where the
    curves go changes no result, so switching it must not re-run training."""
    return os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")


def make_loggers(dvclive_dir: Path, run_config: dict, resume: bool = False, wandb: bool = True) -> list:
    from dvclive.lightning import DVCLiveLogger

    # The pipeline declares these files in dvc.yaml itself, so DVCLive must not write its own dvc.yaml
    # or make experiments from inside a stage.
    # resume continues the curves of an interrupted run instead of starting them again.
    loggers = [DVCLiveLogger(dir=str(dvclive_dir), save_dvc_exp=False, dvcyaml=False, resume=resume)]
    mode = wandb_mode()
    if wandb and mode != "disabled":
        from lightning.pytorch.loggers import WandbLogger

        logger = WandbLogger(
            project=os.environ.get("WANDB_PROJECT", WANDB_PROJECT), mode=mode, save_dir=".", config=run_config
        )
        # Lightning always passes `anonymous`, a setting W&B no longer reads and warns about on every run.
        logger._wandb_init.pop("anonymous", None)
        loggers.append(logger)
    return loggers


def wandb_logger(loggers: list):
    """The W&B logger among `loggers`, or None when W&B is disabled."""
    from lightning.pytorch.loggers import WandbLogger

    return next((logger for logger in loggers if isinstance(logger, WandbLogger)), None)


def log_wandb_results(logger, frame: pd.DataFrame, p_acceptable: np.ndarray) -> None:
    """Confusion matrix and the table of misclassified validation sentences, for the W&B run."""
    import wandb

    from acceptability.model.evaluation import misclassified

    predictions = predicted_labels(p_acceptable)
    wrong = misclassified(frame, p_acceptable)
    names = dict(enumerate(LABELS))
    logger.experiment.log(
        {
            "val/confusion_matrix": wandb.plot.confusion_matrix(
                y_true=frame["label"].tolist(), preds=predictions.tolist(), class_names=list(LABELS)
            ),
            "val/misclassified": wandb.Table(dataframe=wrong.replace({"label": names, "prediction": names})),
        }
    )

"""Read params.yaml and check the values a stage needs before it spends time on them."""

from pathlib import Path

import yaml

from acceptability import POOLINGS
from acceptability.core.errors import UserError

CONF_DIR = Path("conf")


def load_params(path: str | Path = "params.yaml") -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} not found: run the stage from the project root")
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise UserError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(params, dict):
        raise UserError(f"{path}: expected a mapping of sections (data, model, train, ...)")
    return params


def section(params: dict, name: str) -> dict:
    value = params.get(name)
    if not isinstance(value, dict):
        raise UserError(f"params.yaml: section {name!r} is missing or not a mapping")
    return value


def known_models(conf_dir: Path = CONF_DIR) -> list[str]:
    return sorted(path.stem for path in (conf_dir / "model").glob("*.yaml"))


def check_model(model: dict, conf_dir: Path = CONF_DIR) -> None:
    known = known_models(conf_dir)
    if model.get("name") not in known:
        raise UserError(
            f"params.yaml: model.name {model.get('name')!r} is not a model group; "
            f"known groups in {conf_dir / 'model'}: {', '.join(known)}"
        )
    check_pooling(model.get("pooling"))
    if model.get("num_layers") is not None:
        positive(model, "num_layers", int, "model")


def check_pooling(pooling) -> None:
    if pooling not in POOLINGS:
        raise UserError(f"params.yaml: model.pooling must be one of {', '.join(POOLINGS)}; found {pooling!r}")


def positive(cfg: dict, key: str, kind: type, where: str) -> None:
    value = cfg.get(key)
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or value <= 0
        or (kind is int and not isinstance(value, int))  # `32.0` is not a count: the code never converts
    ):
        expected = "a positive integer" if kind is int else "a positive number"
        raise UserError(f"params.yaml: {where}.{key} must be {expected}, found {value!r}")


def natural(cfg: dict, key: str, where: str) -> None:
    """An integer >= 0 (a count that may be zero, or a seed)."""
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UserError(f"params.yaml: {where}.{key} must be an integer >= 0, found {value!r}")


def fraction(cfg: dict, key: str, where: str) -> None:
    """A value in [0, 1): a ratio, a probability or a smoothing weight."""
    value = cfg.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise UserError(f"params.yaml: {where}.{key} must be in [0, 1), found {value!r}")


def check_train(train: dict) -> None:
    """Fail fast, before any model is loaded, on values that would waste a training run."""
    positive(train, "learning_rate", float, "train")
    positive(train, "batch_size", int, "train")
    positive(train, "eval_batch_size", int, "train")
    positive(train, "num_train_epochs", int, "train")
    fraction(train, "warmup_ratio", "train")
    if train.get("head_learning_rate") is not None:
        positive(train, "head_learning_rate", float, "train")
    decay = train.get("layerwise_lr_decay")
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 < decay <= 1:
        raise UserError(f"params.yaml: train.layerwise_lr_decay must be in (0, 1], found {decay!r}")
    if train.get("class_weights") not in (None, "balanced"):
        raise UserError(f"params.yaml: train.class_weights must be null or balanced, found {train['class_weights']!r}")
    if "label_smoothing" in train:  # absent means no smoothing; null is an error
        fraction(train, "label_smoothing", "train")
    if train.get("dropout") is not None:
        fraction(train, "dropout", "train")
    if train.get("gradient_clip_val") is not None:
        positive(train, "gradient_clip_val", float, "train")
    if "num_nodes" in train:
        positive(train, "num_nodes", int, "train")
    counts = ("early_stopping_patience", "log_every_n_steps", *(["num_threads"] if train.get("num_threads") else []))
    for key in counts:
        positive(train, key, int, "train")
    for key in ("seed", "num_workers"):
        natural(train, key, "train")
    check_distillation(train)


def check_distillation(train: dict) -> None:
    weight, copies = train.get("distill_weight"), train.get("augmented_per_sentence")
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight <= 1:
        raise UserError(f"params.yaml: train.distill_weight must be in [0, 1] (0 = no teacher), found {weight!r}")
    positive(train, "distill_temperature", float, "train")
    natural(train, "augmented_per_sentence", "train")
    if copies and not weight:
        raise UserError(
            "params.yaml: train.augmented_per_sentence > 0 needs train.distill_weight > 0: the perturbed sentences "
            "have only the teacher's logits, no gold label"
        )

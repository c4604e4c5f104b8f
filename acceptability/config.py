"""Typed configs for the sections that training reads, built and checked once from params.yaml.

Every value comes from params.yaml, which Hydra composes from conf/: the code holds no defaults, so a key missing
from params.yaml is an error that names it, and so is a key nobody reads (a typo would otherwise be ignored).
"""

from dataclasses import dataclass, fields

from acceptability.errors import UserError
from acceptability.params import check_model, check_train


def values(cls, section: dict, where: str) -> dict:
    """The section's value for each field of cls; missing or unknown keys are errors."""
    names = [field.name for field in fields(cls)]
    missing = [name for name in names if name not in section]
    if missing:
        raise UserError(f"params.yaml: {where} lacks {', '.join(missing)}; conf/ sets every key (compose it again)")
    return {name: section[name] for name in names}


@dataclass(frozen=True)
class ModelShape:
    """What training reads of the `model` section (the rest is the download stage's)."""

    name: str
    pooling: str
    num_layers: int | None

    @classmethod
    def from_section(cls, section: dict, where: str = "model") -> "ModelShape":
        check_model(section)
        return cls(**values(cls, section, where))


@dataclass(frozen=True)
class TrainConfig:
    """The `train` section (and `teacher.train`): the optimiser, the schedule, the trainer and distillation."""

    seed: int
    learning_rate: float
    head_learning_rate: float | None
    layerwise_lr_decay: float
    weight_decay: float
    warmup_ratio: float
    num_train_epochs: int
    batch_size: int
    eval_batch_size: int
    class_weights: str | None
    label_smoothing: float
    dropout: float | None
    gradient_clip_val: float | None
    early_stopping_patience: int
    num_workers: int
    num_threads: int | None
    log_every_n_steps: int
    accelerator: str
    devices: int | str | list
    num_nodes: int
    strategy: str
    precision: str
    deterministic: bool
    distill_weight: float
    distill_temperature: float
    augmented_per_sentence: int

    @classmethod
    def from_section(cls, section: dict, where: str = "train") -> "TrainConfig":
        config = cls(**values(cls, section, where))
        unknown = sorted(set(section) - {field.name for field in fields(cls)})
        if unknown:
            raise UserError(f"params.yaml: {where} has keys no code reads: {', '.join(unknown)}")
        check_train(section)
        return config

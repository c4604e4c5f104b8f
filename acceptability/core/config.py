"""Typed configs, one per params.yaml section, built and checked once by the stage that reads it.

Every value comes from params.yaml, which Hydra composes from conf/: the code holds no defaults, so a key missing
from params.yaml is an error that names it, and so is a key nobody reads (a typo would otherwise be ignored). Each
field's rule (acceptability.core.params) converts and checks its value when the config is built; nothing below
checks it again.
"""

from dataclasses import dataclass
from pathlib import Path

from acceptability import POOLINGS
from acceptability.core import params as check
from acceptability.core.errors import UserError
from acceptability.core.params import CONF_DIR, Invalid, build, known_models, rule, section

# The perturbations the teacher's copies can draw (acceptability/data/augment.py's OPERATIONS; not imported: every
# stage reads this module, and augmenting is the teacher's alone).
AUGMENT_OPERATIONS = tuple(
    "swap drop duplicate inflection determiner preposition auxiliary complementizer argument move clause".split()
)

# The instruction sets the export can measure int8 on under qemu (acceptability/export/isa.py's EMULATED_CPU; not
# imported: every stage reads this module, and the emulation is the export's alone).
EMULATED_ISAS = ("avx2", "vnni")
MODEL_SOURCES = ("auto", "package", "dir", "hub")
DATA_SOURCES = ("auto", "hub", "dir")


def model_group(name, conf_dir: Path = CONF_DIR) -> str:
    known = known_models(conf_dir)
    if name not in known:
        raise Invalid(f"a model group of {conf_dir / 'model'} ({', '.join(known)})")
    return name


class Section:
    """A config built from its params section; `whole`: the section has no key the config does not read."""

    WHERE, WHOLE = "", True

    @classmethod
    def from_section(cls, values: dict, where: str = ""):
        config = build(cls, values, where or cls.WHERE, cls.WHOLE)
        config.check_together(where or cls.WHERE)
        return config

    def check_together(self, where: str) -> None:
        """The rules between fields, once each field passed its own; `where`: the section, for the message."""


@dataclass(frozen=True)
class ModelShape(Section):
    """What training reads of the `model` section (the rest is the download stage's)."""

    WHERE, WHOLE = "model", False
    name: str = rule(model_group)
    pooling: str = rule(check.one_of(*POOLINGS))
    num_layers: int | None = rule(check.optional(check.count))


@dataclass(frozen=True)
class TrainConfig(Section):
    """The `train` section (and `teacher.train`): the optimiser, the schedule, the trainer and distillation."""

    WHERE = "train"
    seed: int = rule(check.natural)
    learning_rate: float = rule(check.positive)
    head_learning_rate: float | None = rule(check.optional(check.positive))
    layerwise_lr_decay: float = rule(check.decay)
    weight_decay: float = rule(check.non_negative)
    warmup_ratio: float = rule(check.fraction)
    num_train_epochs: int = rule(check.count)
    batch_size: int = rule(check.count)
    eval_batch_size: int = rule(check.count)
    class_weights: str | None = rule(check.one_of(None, "balanced"))
    label_smoothing: float = rule(check.fraction)
    dropout: float | None = rule(check.optional(check.fraction))
    gradient_clip_val: float | None = rule(check.optional(check.positive))
    early_stopping_patience: int = rule(check.count)
    num_workers: int = rule(check.natural)
    num_threads: int | None = rule(check.optional(check.count))
    log_every_n_steps: int = rule(check.count)
    accelerator: str = rule(check.text)
    devices: int | str | list  # Lightning checks it against the machine
    num_nodes: int = rule(check.count)
    strategy: str = rule(check.text)
    precision: str = rule(check.text)
    deterministic: bool = rule(check.flag)
    distill_weight: float = rule(check.share)  # 0: no teacher
    distill_temperature: float = rule(check.positive)
    augmented_per_sentence: int = rule(check.natural)
    # which operations' copies to keep (null: all); unused without copies, so `-S train.augmented_per_sentence=0` works
    augment_operations: list | None = rule(check.optional(check.distinct(AUGMENT_OPERATIONS, least=1)))
    freeze_embeddings: bool = rule(check.flag)
    frozen_layers: int = rule(check.natural)  # at most the model's layers: checked when it is loaded
    reinit_top_layers: int = rule(check.natural)  # likewise
    ema_decay: float | None = rule(check.optional(check.fraction))  # null: no weight averaging
    # the plain mean of the weights after every step of the last N epochs (every epoch if the run has fewer), kept at
    # the end with no epoch chosen; null: keep the epoch that SELECT_ON picks
    average_last_epochs: int | None = rule(check.optional(check.count))

    def check_together(self, where: str) -> None:
        if self.augmented_per_sentence and not self.distill_weight:
            raise UserError(
                f"params.yaml: {where}.augmented_per_sentence > 0 needs {where}.distill_weight > 0: the "
                "perturbed sentences have only the teacher's logits, no gold label"
            )
        if self.average_last_epochs is not None and self.ema_decay is not None:
            raise UserError(f"params.yaml: set one of {where}.average_last_epochs and {where}.ema_decay, not both")

    def first_averaged_epoch(self) -> int | None:
        """1-based; None when the weights are not averaged over the last epochs."""
        if self.average_last_epochs is None:
            return None
        return max(1, self.num_train_epochs - self.average_last_epochs + 1)


@dataclass(frozen=True)
class ModelSource(Section):
    """What the download stage (and the teacher stage) reads of a model section: where the pretrained weights come
    from and the sha256 they must have. The rest of the section is ModelShape, training's."""

    WHERE, WHOLE = "model", False
    model_name_or_path: str = rule(check.text)
    revision: str | None = rule(check.optional(check.text))
    source: str = rule(check.one_of(*MODEL_SOURCES))
    package: str | None = rule(check.optional(check.text))
    package_parts: list | None = rule(check.optional(check.names))
    dir: str | None = rule(check.optional(check.text))
    sha256: str | None = rule(check.optional(check.text))


@dataclass(frozen=True)
class DataSource(Section):
    """What the download stage reads of `data`: CoLA's sources and pins, and the rows held out for calibration."""

    WHERE, WHOLE = "data", False
    source: str = rule(check.one_of(*DATA_SOURCES))
    dir: str | None = rule(check.optional(check.text))
    hub_id: str = rule(check.text)
    hub_config: str = rule(check.text)
    hub_revision: str = rule(check.text)
    expected_rows: dict = rule(check.mapping)
    sha256: dict | None = rule(check.optional(check.mapping))
    calibration_rows: int = rule(check.natural)
    split_seed: int = rule(check.natural)


@dataclass(frozen=True)
class Tokenizing(Section):
    """data.max_seq_length, the tokenizer's."""

    WHERE, WHOLE = "data", False
    max_seq_length: int = rule(check.count)


def max_seq_length(params: dict) -> int:
    return Tokenizing.from_section(section(params, "data")).max_seq_length


@dataclass(frozen=True)
class AugmentConfig(Section):
    """teacher.augment: how many perturbed copies of each train sentence the teacher labels, their seed, and the
    operations each copy draws one of."""

    WHERE = "teacher.augment"
    copies: int = rule(check.natural)
    seed: int = rule(check.natural)
    operations: list = rule(check.distinct(AUGMENT_OPERATIONS, least=1))


@dataclass(frozen=True)
class TeacherSeeds(Section):
    """teacher.seeds: one teacher is trained per seed, and the student learns the mean of their logits."""

    WHERE, WHOLE = "teacher", False
    seeds: list = rule(check.seeds)


@dataclass(frozen=True)
class EvaluateConfig(Section):
    WHERE = "evaluate"
    batch_size: int = rule(check.count)


@dataclass(frozen=True)
class ExportConfig(Section):
    """The `export` section: the ONNX opset, the int8 recipe, the two gates (fp32 parity, int8 MCC drop on this CPU
    and on each emulated instruction set) and the golden set the server checks itself with."""

    WHERE = "export"
    opset: int = rule(check.count)
    fuse: bool = rule(check.flag)
    weight_type: str = rule(check.one_of("int8", "uint8"))
    per_channel: bool = rule(check.flag)
    reduce_range: bool = rule(check.flag)
    fp32_nodes: list = rule(check.names)  # parts of node names
    smooth_nodes: list = rule(check.patterns)  # regular expressions on node names
    smooth_alpha: float = rule(check.share)
    smooth_rows: int = rule(check.count)
    max_abs_logit_diff: float = rule(check.positive)
    max_int8_mcc_drop: float = rule(check.non_negative)
    emulated_isas: list = rule(check.distinct(EMULATED_ISAS))
    golden_sentences: int = rule(check.count)
    golden_tolerance: float = rule(check.positive)


@dataclass(frozen=True)
class BenchmarkConfig(Section):
    """The `benchmark` section; max_sentences null times the whole validation set."""

    WHERE = "benchmark"
    threads: int = rule(check.count)
    warmup: int = rule(check.count)
    repetitions: int = rule(check.count)
    batch_size: int = rule(check.count)
    max_sentences: int | None = rule(check.optional(check.count))


@dataclass(frozen=True)
class PromoteConfig(Section):
    """The `promote` section, plus export's int8 threshold: one threshold, so the card's "servable" and the promotion
    guardrail cannot disagree."""

    WHERE = "promote"
    artifact: str = rule(check.text)
    stage: str = rule(check.text)
    margin: float = rule(check.non_negative)
    resamples: int = rule(check.count)
    seed: int = rule(check.natural)
    max_latency_ratio: float = rule(check.positive)
    max_size_mb: float = rule(check.positive)
    max_int8_mcc_drop: float = rule(check.non_negative)

    @classmethod
    def from_params(cls, params: dict) -> "PromoteConfig":
        promote = section(params, "promote")
        if "max_int8_mcc_drop" in promote:
            raise UserError(
                "params.yaml: promote.max_int8_mcc_drop is gone; export.max_int8_mcc_drop is the one threshold"
            )
        threshold = ExportConfig.from_section(section(params, "export")).max_int8_mcc_drop
        return cls.from_section({**promote, "max_int8_mcc_drop": threshold})

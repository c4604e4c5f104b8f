"""Typed configs, one per params.yaml section, built and checked once by the stage that reads it.

Every value comes from params.yaml, which Hydra composes from conf/: the code holds no defaults, so a key missing
from params.yaml is an error that names it, and so is a key nobody reads (a typo would otherwise be ignored).
"""

from dataclasses import dataclass, fields

from acceptability.core.errors import UserError
from acceptability.core.params import check_model, check_train, natural, positive


def values(cls, section: dict, where: str) -> dict:
    """The section's value for each field of cls; missing or unknown keys are errors."""
    names = [field.name for field in fields(cls)]
    missing = [name for name in names if name not in section]
    if missing:
        raise UserError(f"params.yaml: {where} lacks {', '.join(missing)}; conf/ sets every key (compose it again)")
    return {name: section[name] for name in names}


def no_unknown(cls, section: dict, where: str, *others) -> None:
    known = {field.name for klass in (cls, *others) for field in fields(klass)}
    unknown = sorted(set(section) - known)
    if unknown:
        raise UserError(f"params.yaml: {where} has keys no code reads: {', '.join(unknown)}")


def whole(cls, section: dict, where: str):
    """cls built from a section it reads whole: every field present, no other key."""
    config = cls(**values(cls, section, where))
    no_unknown(cls, section, where)
    return config


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
        config = whole(cls, section, where)
        check_train(section)
        return config


@dataclass(frozen=True)
class ModelSource:
    """What the download stage (and the teacher stage) reads of a model section: where the pretrained weights come
    from and the sha256 they must have. The rest of the section is ModelShape, training's."""

    model_name_or_path: str
    revision: str | None
    source: str
    package: str | None
    package_parts: list | None
    dir: str | None
    sha256: str | None

    @classmethod
    def from_section(cls, section: dict, where: str = "model") -> "ModelSource":
        return cls(**values(cls, section, where))


@dataclass(frozen=True)
class DataSource:
    """What the download stage reads of `data`: CoLA's sources and pins, and the rows held out for calibration.
    data.max_seq_length is the tokenizer's, read by max_seq_length()."""

    source: str
    dir: str | None
    hub_id: str
    hub_config: str
    hub_revision: str
    expected_rows: dict
    sha256: dict | None
    calibration_rows: int
    split_seed: int

    @classmethod
    def from_section(cls, section: dict, where: str = "data") -> "DataSource":
        config = cls(**values(cls, section, where))
        natural(section, "calibration_rows", where)
        natural(section, "split_seed", where)
        return config


def max_seq_length(params: dict) -> int:
    data = params.get("data")
    if not isinstance(data, dict):
        raise UserError("params.yaml: section 'data' is missing or not a mapping")
    positive(data, "max_seq_length", int, "data")
    return int(data["max_seq_length"])


@dataclass(frozen=True)
class AugmentConfig:
    """teacher.augment: how many perturbed copies of each train sentence the teacher labels, their seed, and the
    operations each copy draws one of."""

    copies: int
    seed: int
    operations: list

    @classmethod
    def from_section(cls, section: dict, where: str = "teacher.augment") -> "AugmentConfig":
        config = whole(cls, section, where)
        natural(section, "copies", where)
        natural(section, "seed", where)
        names = config.operations
        known = isinstance(names, list) and names and all(name in AUGMENT_OPERATIONS for name in names)
        if not known or len(set(names)) < len(names):
            raise UserError(f"params.yaml: {where}.operations must list distinct ones of {list(AUGMENT_OPERATIONS)}")
        return config


@dataclass(frozen=True)
class EvaluateConfig:
    batch_size: int

    @classmethod
    def from_section(cls, section: dict, where: str = "evaluate") -> "EvaluateConfig":
        config = whole(cls, section, where)
        positive(section, "batch_size", int, where)
        return config


@dataclass(frozen=True)
class ExportConfig:
    """The `export` section: the ONNX opset, the int8 recipe, the two gates (fp32 parity, int8 MCC drop on this CPU
    and on each emulated instruction set) and the golden set the server checks itself with."""

    opset: int
    fuse: bool
    weight_type: str
    per_channel: bool
    reduce_range: bool
    fp32_nodes: list
    max_abs_logit_diff: float
    max_int8_mcc_drop: float
    emulated_isas: list
    golden_sentences: int
    golden_tolerance: float

    @classmethod
    def from_section(cls, section: dict, where: str = "export") -> "ExportConfig":
        config = whole(cls, section, where)
        positive(section, "opset", int, where)
        positive(section, "max_abs_logit_diff", float, where)
        if not isinstance(config.max_int8_mcc_drop, (int, float)) or config.max_int8_mcc_drop < 0:
            raise UserError(f"params.yaml: {where}.max_int8_mcc_drop must be a number >= 0")
        for flag in ("fuse", "per_channel", "reduce_range"):
            if not isinstance(section[flag], bool):
                raise UserError(f"params.yaml: {where}.{flag} must be true or false, found {section[flag]!r}")
        if config.weight_type not in ("int8", "uint8"):
            raise UserError(f"params.yaml: {where}.weight_type must be int8 or uint8, found {config.weight_type!r}")
        nodes = config.fp32_nodes
        if not isinstance(nodes, list) or not all(isinstance(node, str) and node for node in nodes):
            raise UserError(f"params.yaml: {where}.fp32_nodes must be a list of node-name parts, found {nodes!r}")
        isas = config.emulated_isas
        if not isinstance(isas, list) or any(isa not in EMULATED_ISAS for isa in isas) or len(set(isas)) < len(isas):
            raise UserError(f"params.yaml: {where}.emulated_isas must list distinct ones of {list(EMULATED_ISAS)}")
        positive(section, "golden_sentences", int, where)
        positive(section, "golden_tolerance", float, where)
        return config


# The perturbations the teacher's copies can draw (acceptability/data/augment.py's OPERATIONS; not imported: every stage
# reads this module, and augmenting is the teacher's alone).
AUGMENT_OPERATIONS = (
    "swap",
    "drop",
    "duplicate",
    "inflection",
    "determiner",
    "preposition",
    "auxiliary",
    "complementizer",
    "argument",
    "move",
    "clause",
)

# The instruction sets the export can measure int8 on under qemu (acceptability/export/isa.py's EMULATED_CPU; not
# imported: every stage reads this module, and the emulation is the export's alone).
EMULATED_ISAS = ("avx2", "vnni")


@dataclass(frozen=True)
class BenchmarkConfig:
    """The `benchmark` section; max_sentences null times the whole validation set."""

    threads: int
    warmup: int
    repetitions: int
    batch_size: int
    max_sentences: int | None

    @classmethod
    def from_section(cls, section: dict, where: str = "benchmark") -> "BenchmarkConfig":
        config = whole(cls, section, where)
        for key in ("threads", "warmup", "repetitions", "batch_size"):
            positive(section, key, int, where)
        if config.max_sentences is not None:
            positive(section, "max_sentences", int, where)
        return config


@dataclass(frozen=True)
class PromoteConfig:
    """The `promote` section, plus export's int8 threshold: one threshold, so the card's "servable" and the promotion
    guardrail cannot disagree."""

    artifact: str
    stage: str
    margin: float
    resamples: int
    seed: int
    max_latency_ratio: float
    max_size_mb: float
    max_int8_mcc_drop: float

    @classmethod
    def from_params(cls, params: dict) -> "PromoteConfig":
        promote, export = params.get("promote"), params.get("export")
        if not isinstance(promote, dict) or not isinstance(export, dict):
            raise UserError("params.yaml: the promote and export sections must both be mappings")
        no_unknown(cls, promote, "promote")
        if "max_int8_mcc_drop" in promote:
            raise UserError(
                "params.yaml: promote.max_int8_mcc_drop is gone; export.max_int8_mcc_drop is the one threshold"
            )
        section = {**promote, "max_int8_mcc_drop": ExportConfig.from_section(export).max_int8_mcc_drop}
        config = cls(**values(cls, section, "promote"))
        positive(section, "resamples", int, "promote")
        for key in ("max_latency_ratio", "max_size_mb"):
            positive(section, key, float, "promote")
        natural(section, "seed", "promote")
        return config

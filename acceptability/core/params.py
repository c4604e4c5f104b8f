"""Read params.yaml, and the checks a config field declares: each converts a value or says what it must be."""

import re
from dataclasses import field, fields
from pathlib import Path

import yaml

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


class Invalid(ValueError):
    """What a value must be; build() names the key and the value found."""


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def count(value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:  # `32.0` is not a count
        raise Invalid("a positive integer")
    return value


def natural(value) -> int:
    """An integer >= 0 (a count that may be zero, or a seed)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise Invalid("an integer >= 0")
    return value


def positive(value) -> float:
    if not is_number(value) or value <= 0:
        raise Invalid("a positive number")
    return float(value)


def non_negative(value) -> float:
    if not is_number(value) or value < 0:
        raise Invalid("a number >= 0")
    return float(value)


def fraction(value) -> float:
    """A value in [0, 1): a ratio, a probability or a smoothing weight."""
    if not is_number(value) or not 0 <= value < 1:
        raise Invalid("in [0, 1)")
    return float(value)


def share(value) -> float:
    if not is_number(value) or not 0 <= value <= 1:
        raise Invalid("in [0, 1]")
    return float(value)


def decay(value) -> float:
    if not is_number(value) or not 0 < value <= 1:
        raise Invalid("in (0, 1]")
    return float(value)


def flag(value) -> bool:
    if not isinstance(value, bool):
        raise Invalid("true or false")
    return value


def one_of(*choices):
    def check(value):
        if value not in choices:
            raise Invalid(f"one of {', '.join('null' if choice is None else str(choice) for choice in choices)}")
        return value

    return check


def distinct(choices: tuple, least: int = 0):
    """A list of at least `least` distinct names from `choices`."""

    def check(value) -> list:
        listed = isinstance(value, list) and len(value) >= least and all(item in choices for item in value)
        if not listed or len(set(value)) < len(value):
            raise Invalid(f"a list of distinct ones of {list(choices)}")
        return value

    return check


def seeds(value) -> list:
    """A non-empty list of distinct seeds."""
    listed = isinstance(value, list) and len(value) > 0
    whole = listed and all(isinstance(item, int) and not isinstance(item, bool) and item >= 0 for item in value)
    if not whole or len(set(value)) < len(value):
        raise Invalid("a non-empty list of distinct integers >= 0")
    return value


def optional(check):
    return lambda value: None if value is None else check(value)


def text(value) -> str:
    if not isinstance(value, str):
        raise Invalid("a string")
    return value


def mapping(value) -> dict:
    if not isinstance(value, dict):
        raise Invalid("a mapping")
    return value


def names(value) -> list:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise Invalid("a list of non-empty names")
    return value


def patterns(value) -> list:
    """A list of regular expressions (matched with re.search)."""
    for item in names(value):
        try:
            re.compile(item)
        except re.error as error:
            raise Invalid(f"a list of regular expressions ({item!r}: {error})") from None
    return value


def rule(check):
    """A config field whose value `check` converts and checks, once, when the config is built."""
    return field(metadata={"check": check})


def build(cls, section: dict, where: str, whole: bool = True):
    """cls from a params section: every field present and checked by its rule; `whole`: no other key."""
    declared = fields(cls)
    missing = [item.name for item in declared if item.name not in section]
    if missing:
        raise UserError(f"params.yaml: {where} lacks {', '.join(missing)}; conf/ sets every key (compose it again)")
    unknown = sorted(set(section) - {item.name for item in declared}) if whole else []
    if unknown:
        raise UserError(f"params.yaml: {where} has keys no code reads: {', '.join(unknown)}")
    values = {}
    for item in declared:
        value = section[item.name]
        try:
            values[item.name] = item.metadata.get("check", lambda same: same)(value)
        except Invalid as err:
            raise UserError(f"params.yaml: {where}.{item.name} must be {err}, found {value!r}") from None
    return cls(**values)

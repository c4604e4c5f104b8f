"""CoLA loading from the Hugging Face Hub or a folder of the public-release TSVs, normalised to one format.

Both sources give the GLUE splits: `train` = in_domain_train (8,551 rows) and `validation` = in_domain_dev (527)
followed by out_of_domain_dev (516). Rows are `idx, sentence, label, source, domain`.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from acceptability.core.config import DataSource
from acceptability.core.errors import UserError
from acceptability.inference.hashing import sha256_file

COLUMNS = ["idx", "sentence", "label", "source", "domain"]
SPLIT_FILES = {
    "train": [("in_domain_train.tsv", "in")],
    "validation": [("in_domain_dev.tsv", "in"), ("out_of_domain_dev.tsv", "out")],
}
EXPECTED_KEYS = {
    "in_domain_train.tsv": "train",
    "in_domain_dev.tsv": "in_domain_dev",
    "out_of_domain_dev.tsv": "out_of_domain_dev",
}
MISSING = "unknown"  # value of a field the source does not provide
DEFAULT_EXTERNAL_DIR = Path("data/external/cola_public")


@dataclass
class LoadedCola:
    splits: dict[str, pd.DataFrame]
    record: dict  # which source was used, and how it was verified


def resolve_source(source: str, data_dir: str | None) -> tuple[str, Path | None]:
    """Pick `hub` or `dir` (and the folder) from the `data.source` param, `data.dir` and COLA_DIR."""
    env_dir = os.environ.get("COLA_DIR") or None
    folder = data_dir or env_dir
    if source == "auto":
        if folder:
            source = "dir"
        elif DEFAULT_EXTERNAL_DIR.is_dir():
            source, folder = "dir", str(DEFAULT_EXTERNAL_DIR)
        else:
            source = "hub"
    if source == "hub":
        return "hub", None
    if not folder:
        raise UserError(
            "data.source=dir needs a folder: set the param data.dir or the environment variable "
            "COLA_DIR to the folder holding in_domain_train.tsv, in_domain_dev.tsv, out_of_domain_dev.tsv"
        )
    return "dir", Path(folder)


def read_tsv(path: Path, domain: str) -> pd.DataFrame:
    """Read one public-release TSV (source, label, original mark, sentence; no header, no quoting)."""
    rows = []
    with open(path, encoding="utf-8", newline="") as stream:
        for lineno, line in enumerate(stream, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != 4:
                raise UserError(
                    f"{path}, line {lineno}: expected 4 tab-separated fields "
                    f"(source, label, original mark, sentence), found {len(fields)}"
                )
            source, label, _mark, sentence = fields
            if label not in ("0", "1"):
                raise UserError(f"{path}, line {lineno}: field 'label' must be 0 or 1, found {label!r}")
            if not sentence.strip():
                raise UserError(f"{path}, line {lineno}: field 'sentence' is empty")
            rows.append((sentence, int(label), source, domain))
    return pd.DataFrame(rows, columns=["sentence", "label", "source", "domain"])


def load_dir(folder: Path, expected_rows: dict, sha256: dict | None) -> LoadedCola:
    """Load the public-release TSVs from `folder`, checking each file's sha256 (when pinned) and row count."""
    if not folder.is_dir():
        raise UserError(f"CoLA folder {folder} does not exist (from data.dir or COLA_DIR)")
    files = [name for parts in SPLIT_FILES.values() for name, _ in parts]
    missing = [name for name in files if not (folder / name).is_file()]
    if missing:
        raise UserError(
            f"CoLA folder {folder} lacks {', '.join(missing)}: it must hold the public release's "
            f"raw/ TSVs ({', '.join(files)})"
        )
    hashes = {name: sha256_file(folder / name) for name in files}
    for name, expected in (sha256 or {}).items():
        if expected and hashes.get(name) != expected:
            raise UserError(
                f"{folder / name}: sha256 {hashes.get(name)} does not match data.sha256.{name} "
                f"= {expected}; the file is not the pinned CoLA release"
            )
    splits = {}
    for split, parts in SPLIT_FILES.items():
        frames = []
        for name, domain in parts:
            frame = read_tsv(folder / name, domain)
            check_rows(f"{folder / name}", len(frame), expected_rows[EXPECTED_KEYS[name]])
            frames.append(frame)
        splits[split] = with_idx(pd.concat(frames, ignore_index=True))
    # The folder's name, not its path: this record is a DVC output, so a path that differs from machine to machine
    # would change dvc.lock in every clone. The sha256s pin the data.
    record = {"source": "dir", "location": folder.resolve().name, "sha256": hashes, "missing_fields": []}
    return LoadedCola(splits, record)


def unreachable(err: BaseException) -> bool:
    """A network failure or offline mode: the only errors that mean "the Hub cannot be reached". Anything else
    (a revision or file not found, a bad answer) propagates as what it is."""
    import httpx
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    network = (ConnectionError, TimeoutError, httpx.TransportError, LocalEntryNotFoundError, OfflineModeIsEnabled)
    return isinstance(err, network)


def load_hub(hub_id: str, config: str, revision: str, expected_rows: dict) -> LoadedCola:
    """Load GLUE CoLA from the Hugging Face Hub at a pinned revision."""
    from datasets import load_dataset  # heavy: only the hub path needs it

    try:
        dataset = load_dataset(hub_id, config, revision=revision)
    except Exception as err:
        if not unreachable(err):
            raise
        raise UserError(
            f"could not load {hub_id} ({config}) at revision {revision} from the Hugging Face Hub: "
            f"{type(err).__name__}: {err}. To run offline, point COLA_DIR at a folder of the CoLA public "
            f"release TSVs (e.g. COLA_DIR=../shared/data/cola_public) or set data.source=dir and data.dir"
        ) from None
    train = dataset["train"].to_pandas()
    validation = dataset["validation"].to_pandas()
    for frame, name in ((train, "train"), (validation, "validation")):
        bad = sorted(set(frame["label"].unique()) - {0, 1})
        if bad:
            raise UserError(f"{hub_id}/{config} split {name}: field 'label' must be 0 or 1, found {bad}")
    check_rows(f"{hub_id}/{config} train", len(train), expected_rows["train"])
    n_in, n_out = expected_rows["in_domain_dev"], expected_rows["out_of_domain_dev"]
    check_rows(f"{hub_id}/{config} validation", len(validation), n_in + n_out)
    # GLUE's validation is in_domain_dev followed by out_of_domain_dev; GLUE drops the source code.
    train = train.assign(source=MISSING, domain="in")
    validation = validation.assign(source=MISSING, domain=["in"] * n_in + ["out"] * n_out)
    splits = {"train": with_idx(train), "validation": with_idx(validation)}
    record = {"source": "hub", "location": hub_id, "config": config, "revision": revision, "missing_fields": ["source"]}
    return LoadedCola(splits, record)


def check_rows(what: str, found: int, expected: int) -> None:
    if found != expected:
        raise UserError(f"{what}: expected {expected} rows (data.expected_rows), found {found}")


def with_idx(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.reset_index(drop=True)
    frame["idx"] = range(len(frame))
    frame["label"] = frame["label"].astype(int)
    return frame[COLUMNS]


def load_cola(cfg: DataSource) -> LoadedCola:
    """Load CoLA as the `data` section of params.yaml says; see docs/pipeline.md, "Running offline"."""
    source, folder = resolve_source(cfg.source, cfg.dir)
    if source == "dir":
        return load_dir(folder, cfg.expected_rows, cfg.sha256)
    return load_hub(cfg.hub_id, cfg.hub_config, cfg.hub_revision, cfg.expected_rows)


def hold_out(train: pd.DataFrame, rows: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train without them, `rows` rows held out for calibration), drawn per label in train's proportions."""
    if not 0 <= rows < len(train):
        raise UserError(f"params.yaml: data.calibration_rows must be in [0, {len(train)}), found {rows!r}")
    rng = np.random.default_rng(seed)
    picked = []
    for _, group in train.groupby("label"):
        share = round(rows * len(group) / len(train))
        picked.extend(rng.choice(group.index.to_numpy(), size=share, replace=False).tolist())
    held = train.index.isin(picked)
    return train[~held].reset_index(drop=True), train[held].reset_index(drop=True)


def write_split(frame: pd.DataFrame, path: Path) -> None:
    frame.to_csv(path, index=False)


def read_split(path: str | Path) -> pd.DataFrame:
    """Read a normalised split written by the download stage; sentences like 'None' stay strings."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} is missing: run `dvc repro download` first")
    frame = pd.read_csv(path, keep_default_na=False, dtype={"sentence": str, "source": str, "domain": str})
    missing = [column for column in COLUMNS if column not in frame.columns]
    if missing:
        raise UserError(f"{path}: missing columns {missing}; expected {COLUMNS}")
    return frame

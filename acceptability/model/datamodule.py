"""LightningDataModule over the tokenize stage's arrays, with dynamic padding to the longest row of each batch."""

from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from acceptability.core.config import AUGMENT_OPERATIONS, TrainConfig
from acceptability.core.errors import UserError
from acceptability.data.encode import load_encoded


def concat_encoded(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Two tokenized splits as one: b's rows after a's."""
    joined = {key: np.concatenate([a[key], b[key]]) for key in ("idx", "labels", "input_ids", "teacher_logits")}
    joined["offsets"] = np.concatenate([a["offsets"], b["offsets"][1:] + a["offsets"][-1]])
    return joined


def only_operations(copies: dict[str, np.ndarray], kept: list[str] | None, path: Path) -> dict[str, np.ndarray]:
    """The perturbed copies with those the `kept` operations did not make replaced by their sentence's kept copies,
    in turn: each epoch keeps its rows, its steps and its sentences, and loses the other operations (and some
    variety). A sentence with no kept copy keeps its own. None: every copy as it is."""
    if kept is None:
        return copies
    if "operation" not in copies:
        raise UserError(f"{path} does not say which operation made each copy: re-run `dvc repro tokenize`")
    made = set(copies["operation"].tolist())
    codes = [AUGMENT_OPERATIONS.index(name) for name in kept]
    if not made & set(codes):
        present = [AUGMENT_OPERATIONS[code] for code in sorted(made)]
        raise UserError(
            f"params.yaml: train.augment_operations={kept}, but the teacher's copies were made by {present} "
            "(teacher.augment.operations; re-run the teacher for others: docs/experiments.md)"
        )
    replaced = ~np.isin(copies["operation"], codes)
    take = np.arange(len(replaced))
    order = np.argsort(copies["source"], kind="stable")
    firsts = np.flatnonzero(np.diff(copies["source"][order])) + 1
    for rows in np.split(order, firsts):
        own, others = rows[~replaced[rows]], rows[replaced[rows]]
        if len(own):
            take[others] = own[np.arange(len(others)) % len(own)]
    swapped = int((take != np.arange(len(take))).sum())
    print(
        f"train.augment_operations={kept}: {swapped:,} of {len(take):,} copies replaced by another copy of their "
        f"sentence; {int(replaced.sum()) - swapped} kept, their sentences having no copy of those operations"
    )
    starts, ends = copies["offsets"][:-1][take], copies["offsets"][1:][take]
    kept_copies = {key: copies[key][take] for key in ("idx", "labels", "teacher_logits", "source", "operation")}
    input_ids = np.concatenate([copies["input_ids"][a:b] for a, b in zip(starts, ends, strict=True)])
    offsets = np.concatenate([[0], np.cumsum(ends - starts)])
    return kept_copies | {"copy": copies["copy"], "input_ids": input_ids, "offsets": offsets}


class EncodedSplit(Dataset):
    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = arrays

    def __len__(self) -> int:
        return len(self.arrays["labels"])

    def __getitem__(self, i: int) -> tuple:
        """(token ids, label), plus the teacher's logits when the split has them; label -1 = no gold label."""
        start, end = self.arrays["offsets"][i], self.arrays["offsets"][i + 1]
        row = (self.arrays["input_ids"][start:end], int(self.arrays["labels"][i]))
        return row + (self.arrays["teacher_logits"][i],) if "teacher_logits" in self.arrays else row


class RotatingCopies:
    """The rows of an epoch: every gold row and `per_epoch` perturbed copies of each train sentence, the next ones
    each epoch (epoch e takes copies e*k to e*k + k - 1, modulo the number the teacher labelled), so the student sees
    more varied sentences in the same number of steps. With as many copies as it takes per epoch: every row, always.
    """

    def __init__(self, copy: np.ndarray, per_epoch: int):
        """copy: per row, which perturbation of its sentence it is; -1 for a gold row."""
        self.copy, self.per_epoch = copy, per_epoch
        self.labelled = int(copy.max(initial=-1)) + 1

    def __call__(self, epoch: int) -> np.ndarray:
        wanted = (epoch * self.per_epoch + np.arange(self.per_epoch)) % self.labelled
        return np.flatnonzero((self.copy < 0) | np.isin(self.copy, wanted))


class LengthGroupedBatches:
    """Shuffled batches of similar length: padding shrinks to almost nothing, so steps get about twice as fast.

    Each epoch: shuffle (seeded by seed + epoch), cut into pools of `pool_batches` batches, sort each pool by
    length, slice it into batches, then shuffle the batch order so lengths don't rise through the epoch.
    Under DDP every rank builds the same list and takes every `world_size`-th batch, the same count on each.
    """

    def __init__(
        self,
        lengths: np.ndarray,
        batch_size: int,
        seed: int,
        pool_batches: int = 50,
        rank: int = 0,
        world_size: int = 1,
        epoch_rows: "RotatingCopies | None" = None,
    ):
        """epoch_rows: which rows each epoch draws from (the same number every epoch); None: all of them."""
        self.lengths, self.batch_size, self.seed, self.pool = lengths, batch_size, seed, pool_batches
        self.rank, self.world_size = rank, world_size
        self.epoch_rows = epoch_rows
        self.rows = len(epoch_rows(0)) if epoch_rows else len(lengths)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:  # Lightning calls this before each epoch
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.rows // self.batch_size) // self.world_size

    def __iter__(self):
        rng = np.random.default_rng(self.seed + self.epoch)
        rows = self.epoch_rows(self.epoch) if self.epoch_rows else np.arange(len(self.lengths))
        order = rows[rng.permutation(len(rows))]
        pool_size = self.batch_size * self.pool
        batches = []
        for start in range(0, len(order), pool_size):
            pool = order[start : start + pool_size]
            pool = pool[np.argsort(self.lengths[pool], kind="stable")]
            batches += [pool[i : i + self.batch_size].tolist() for i in range(0, len(pool), self.batch_size)]
        shuffled = rng.permutation(len(batches))[: len(self) * self.world_size]
        for i in shuffled[self.rank :: self.world_size]:
            yield batches[i]


class PadCollator:
    """Pad a batch to its own longest sentence, not to max_seq_length: most CoLA sentences are short."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, batch: list[tuple]) -> dict[str, torch.Tensor]:
        width = max(len(item[0]) for item in batch)
        input_ids = torch.full((len(batch), width), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, item in enumerate(batch):
            input_ids[row, : len(item[0])] = torch.from_numpy(item[0].astype(np.int64))
            attention_mask[row, : len(item[0])] = 1
        labels = torch.tensor([item[1] for item in batch], dtype=torch.long)
        collated = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        if len(batch[0]) == 3:
            collated["teacher_logits"] = torch.from_numpy(np.stack([item[2] for item in batch]))
        return collated


def split_loader(path: Path, pad_token_id: int, batch_size: int) -> DataLoader:
    """A tokenized split in file order, for prediction."""
    split = EncodedSplit(load_encoded(path))
    return DataLoader(split, batch_size=batch_size, shuffle=False, collate_fn=PadCollator(pad_token_id))


class ColaDataModule(L.LightningDataModule):
    def __init__(self, tokenized_dir: Path, cfg: TrainConfig, pad_token_id: int):
        """With cfg.distill_weight > 0, train rows carry the teacher's logits; cfg.augmented_per_sentence: also
        train on that many perturbed copies of each train sentence, which have only the teacher's logits (tokenize
        stage, augmented.npz)."""
        super().__init__()
        self.seed, self.distill, self.augmented = cfg.seed, cfg.distill_weight > 0, cfg.augmented_per_sentence
        self.operations = cfg.augment_operations
        self.tokenized_dir = tokenized_dir
        self.batch_size, self.eval_batch_size = cfg.batch_size, cfg.eval_batch_size
        self.collate = PadCollator(pad_token_id)
        self.num_workers = cfg.num_workers
        self.splits: dict[str, EncodedSplit] = {}
        self.epoch_rows: RotatingCopies | None = None  # set with the perturbed copies

    def setup(self, stage: str | None = None) -> None:
        for split in ("train", "validation"):
            if split not in self.splits:
                arrays = load_encoded(self.tokenized_dir / f"{split}.npz")
                self.splits[split] = EncodedSplit(self.with_teacher(arrays) if split == "train" else arrays)
        calibration = self.tokenized_dir / "calibration.npz"  # absent when data.calibration_rows is 0
        if "calibration" not in self.splits and calibration.is_file():
            self.splits["calibration"] = EncodedSplit(load_encoded(calibration))

    @property
    def has_calibration(self) -> bool:
        """Held-out train rows to select the epoch on (data.calibration_rows > 0)."""
        self.setup()
        return "calibration" in self.splits and len(self.splits["calibration"]) > 0

    def with_teacher(self, train: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self.distill:
            train.pop("teacher_logits", None)  # plain cross-entropy: batches as before there was a teacher
            return train
        if "teacher_logits" not in train:
            raise UserError(
                f"{self.tokenized_dir}/train.npz has no teacher logits: train.distill_weight > 0 needs the "
                "teacher stage's data/teacher/ (see docs/experiments.md)"
            )
        unseen = int(np.isnan(train["teacher_logits"]).any(axis=1).sum())
        if unseen:
            raise UserError(
                f"data/teacher/train.csv has no logits for {unseen} train rows of {self.tokenized_dir}/train.npz: "
                "the teacher ran on another split (data.calibration_rows, data.split_seed); re-run it "
                "(docs/experiments.md) or set train.distill_weight=0"
            )
        if not self.augmented:
            return train
        extra = load_encoded(self.tokenized_dir / "augmented.npz")
        if extra["copy"].max(initial=-1) + 1 < self.augmented:
            raise UserError(
                f"train.augmented_per_sentence={self.augmented}, but the teacher labelled only "
                f"{extra['copy'].max(initial=-1) + 1} copies per sentence (teacher.augment.copies)"
            )
        extra = only_operations(extra, self.operations, self.tokenized_dir / "augmented.npz")
        self.epoch_rows = RotatingCopies(
            np.concatenate([np.full(len(train["labels"]), -1), extra["copy"]]), self.augmented
        )
        return concat_encoded(train, extra)

    def loader(self, split: str, **sampling) -> DataLoader:
        return DataLoader(
            self.splits[split],
            collate_fn=self.collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            **sampling,
        )

    def train_dataloader(self) -> DataLoader:
        offsets = self.splits["train"].arrays["offsets"]
        trainer = self.trainer  # None outside a Trainer: one process
        rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        batches = LengthGroupedBatches(
            np.diff(offsets), self.batch_size, self.seed, rank=rank, world_size=world, epoch_rows=self.epoch_rows
        )
        return self.loader("train", batch_sampler=batches)

    def validation_loader(self) -> DataLoader:
        return self.loader("validation", batch_size=self.eval_batch_size, shuffle=False)

    def val_dataloader(self) -> list[DataLoader]:
        """Lightning's: validation, for its curves, then the calibration rows that select the epoch (SELECT_ON)."""
        held_out = [self.loader("calibration", batch_size=self.eval_batch_size, shuffle=False)]
        return [self.validation_loader(), *(held_out if self.has_calibration else [])]

"""The classifier (a Hugging Face encoder, pooled by [CLS] or by mean) and its LightningModule."""

import re
import sys
from dataclasses import asdict
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics.classification import BinaryAccuracy, BinaryMatthewsCorrCoef
from transformers import AutoConfig, AutoModelForSequenceClassification, get_linear_schedule_with_warmup
from transformers.utils import logging as transformers_logging

from acceptability import LABELS
from acceptability.core.config import ModelShape, TrainConfig
from acceptability.core.errors import UserError

NO_DECAY = ("bias", "LayerNorm.weight", "LayerNorm.bias")
LAYER = re.compile(r"\.layer\.(\d+)\.")
HEAD = re.compile(r"(^|\.)(pre_)?classifier\.")  # a sequence-classification head, new on a pretrained encoder
POOLER = re.compile(r"(^|\.)pooler\.")


# The epoch kept, and when to stop, are decided on the calibration rows held out of train: validation MCC, the
# figure reported, is never looked at while training, so it stays an unbiased estimate.
SELECT_ON = "calibration/mcc"


class SentenceClassifier(torch.nn.Module):
    """(input_ids, attention_mask) -> logits.

    `cls` runs the model's own head on [CLS]. `mean` averages the real tokens, as all-MiniLM-L6-v2 was trained
    to; `max` takes each feature's largest value over the real tokens (one bad word can make a sentence
    unacceptable, and averaging dilutes it). Both then apply the model's dropout and linear classifier, so the
    saved weights keep the Hugging Face layout.
    """

    def __init__(self, model: torch.nn.Module, pooling: str):
        super().__init__()
        if pooling != "cls":
            classifier = getattr(model, "classifier", None)
            if not isinstance(classifier, torch.nn.Linear) or not hasattr(model, "dropout"):
                raise UserError(
                    f"model.pooling={pooling} needs a linear classifier on the hidden states; "
                    f"{type(model).__name__} has {type(classifier).__name__}: use model.pooling=cls"
                )
            if getattr(model.base_model, "pooler", None) is not None:
                model.base_model.pooler = None  # unused outside cls; DDP rejects parameters without gradients
        model.config.classifier_pooling = pooling  # saved in config.json, read back by load_classifier
        self.model, self.pooling = model, pooling
        # Fitted after training (acceptability.inference.calibration) and saved in config.json: the logits leave
        # divided by it, so torch, both ONNX exports (traced from this forward), the API and Lambda give the same
        # probabilities.
        self.temperature = float(getattr(model.config, "calibration_temperature", 1.0))

    def set_temperature(self, temperature: float) -> None:
        self.temperature = self.model.config.calibration_temperature = float(temperature)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        logits = self.pooled_logits(input_ids, attention_mask)
        return logits if self.temperature == 1.0 else logits / self.temperature

    def pooled_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "cls":
            return self.model(input_ids=input_ids, attention_mask=attention_mask).logits
        hidden = self.model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        if self.pooling == "max":
            pooled = hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
        else:
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return self.model.classifier(self.model.dropout(pooled))

    def save_pretrained(self, folder: Path) -> None:
        self.model.save_pretrained(folder, safe_serialization=True)


def load_classifier(
    model_dir: str | Path, pooling: str | None = None, num_layers: int | None = None, **options
) -> SentenceClassifier:
    """A 2-label classifier from a save_pretrained folder (safetensors only); options go to from_pretrained.

    `pooling` None means the one recorded in the folder's config.json (`cls` when there is none).
    `num_layers` keeps only the first encoder layers (None: all); the saved config.json records the count.
    """
    if not (Path(model_dir) / "model.safetensors").is_file():  # else from_pretrained would try the Hub
        raise UserError(f"{model_dir}/model.safetensors is missing: run `dvc repro` up to the stage that writes it")
    if num_layers is not None:
        available = AutoConfig.from_pretrained(str(model_dir)).num_hidden_layers
        if num_layers > available:
            raise UserError(
                f"params.yaml: model.num_layers must be null or 1..{available} "
                f"({model_dir} has {available} layers), found {num_layers!r}"
            )
        options["num_hidden_layers"] = num_layers
    verbosity = transformers_logging.get_verbosity()
    # Its LOAD REPORT lists gaps that are expected here (a new head, a dropped pooler) as MISSING, which reads as
    # lost weights: check_loaded below accepts exactly those and names anything else.
    transformers_logging.set_verbosity_error()
    try:
        model, loading = AutoModelForSequenceClassification.from_pretrained(
            str(model_dir),
            num_labels=len(LABELS),
            id2label=dict(enumerate(LABELS)),
            label2id={label: i for i, label in enumerate(LABELS)},
            use_safetensors=True,
            output_loading_info=True,
            **options,
        )
    finally:
        transformers_logging.set_verbosity(verbosity)
    fine_tuned = hasattr(model.config, "classifier_pooling")  # SentenceClassifier saved it: a head must be there
    pooling = pooling or getattr(model.config, "classifier_pooling", "cls")
    check_loaded(model_dir, loading, fine_tuned, pooling, model.config.num_hidden_layers)
    return SentenceClassifier(model, pooling)


def check_loaded(model_dir, loading: dict, fine_tuned: bool, pooling: str, num_layers: int) -> None:
    """The expected gaps of a load: a pretrained encoder has no classifier head yet (it is initialised, said in
    one line); a non-cls pooling saves no pooler; layers past num_layers stay unused. Anything else missing from
    a fine-tuned folder is an error; from a pretrained one, a warning."""

    def expected_missing(key: str) -> bool:
        new_head = not fine_tuned and HEAD.search(key) is not None
        return new_head or (pooling != "cls" and POOLER.search(key) is not None)

    def dropped_layer(key: str) -> bool:
        match = LAYER.search(f".{key}")
        return match is not None and int(match.group(1)) >= num_layers

    missing = sorted(key for key in loading["missing_keys"] if not expected_missing(key))
    unused = sorted(key for key in loading["unexpected_keys"] if not dropped_layer(key))
    if fine_tuned and (missing or unused):
        raise UserError(
            f"{model_dir}/model.safetensors does not match its config.json: missing {missing[:5]}, "
            f"unexpected {unused[:5]}; re-run the stage that wrote it"
        )
    if missing:
        print(
            f"warning: {model_dir}: {len(missing)} weights are not in the checkpoint and start random: "
            f"{', '.join(missing[:5])}",
            file=sys.stderr,
        )
    if not fine_tuned:
        unused_note = f"; {len(unused)} checkpoint tensors unused (pretraining heads)" if unused else ""
        print(
            f"{model_dir}: pretrained encoder with a new {len(LABELS)}-label classifier head{unused_note}",
            file=sys.stderr,
        )


def dropout_options(dropout: float | None) -> dict:
    """from_pretrained overrides for train.dropout; None keeps the model's own."""
    if dropout is None:
        return {}
    return {"hidden_dropout_prob": dropout, "attention_probs_dropout_prob": dropout}


def parameter_groups(model: torch.nn.Module, cfg: TrainConfig, num_layers: int) -> list[dict]:
    """AdamW groups with layer-wise LR decay: the head gets head_learning_rate (null: learning_rate), layer i gets
    learning_rate * decay**(num_layers - i), the embeddings learning_rate * decay**(num_layers + 1). Biases and
    LayerNorm weights get no weight decay."""
    lr, decay, weight_decay = cfg.learning_rate, cfg.layerwise_lr_decay, cfg.weight_decay
    head_lr = cfg.head_learning_rate or lr
    groups: dict[tuple[float, float], list] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        layer = LAYER.search(name)
        if layer:
            rate = lr * decay ** (num_layers - int(layer.group(1)))
        elif ".embeddings." in f".{name}":
            rate = lr * decay ** (num_layers + 1)
        elif name.startswith(("classifier.", "model.classifier.")):
            rate = head_lr
        else:  # the [CLS] pooler and any other top-level part
            rate = lr
        groups.setdefault((rate, 0.0 if name.endswith(NO_DECAY) else weight_decay), []).append(parameter)
    return [{"params": params, "lr": rate, "weight_decay": wd} for (rate, wd), params in groups.items()]


def layer_count(model: torch.nn.Module, wanted: int, key: str) -> int:
    """The model's layer count, checked against a param that names `wanted` of them."""
    layers = model.config.num_hidden_layers
    if wanted > layers:
        raise UserError(
            f"params.yaml: {key} must be at most the model's {layers} layers, found {wanted} "
            f"(train.{key}, or teacher.train.{key} for the teacher)"
        )
    return layers


def freeze_bottom(model: torch.nn.Module, cfg: TrainConfig) -> None:
    """Keep the embeddings (cfg.freeze_embeddings) and the first cfg.frozen_layers encoder layers as pretrained."""
    layer_count(model, cfg.frozen_layers, "frozen_layers")
    for name, parameter in model.named_parameters():
        layer = LAYER.search(f".{name}")
        embedding = cfg.freeze_embeddings and ".embeddings." in f".{name}"
        if embedding or (layer is not None and int(layer.group(1)) < cfg.frozen_layers):
            parameter.requires_grad_(False)


def reinit_top(model: torch.nn.Module, cfg: TrainConfig) -> None:
    """Restart the top cfg.reinit_top_layers layers as BERT initialises (transformers' own skips loaded weights)."""
    layers = layer_count(model, cfg.reinit_top_layers, "reinit_top_layers")
    for part in model.base_model.encoder.layer[layers - cfg.reinit_top_layers :].modules():
        if isinstance(part, (torch.nn.Linear, torch.nn.LayerNorm)):
            torch.nn.init.zeros_(part.bias)
        if isinstance(part, torch.nn.Linear):
            torch.nn.init.normal_(part.weight, std=model.config.initializer_range)
        elif isinstance(part, torch.nn.LayerNorm):
            torch.nn.init.ones_(part.weight)


def balanced_class_weights(labels: np.ndarray, num_classes: int = len(LABELS)) -> list[float]:
    """n / (classes * count): each class weighs the same in the loss (most of CoLA's train split is acceptable)."""
    counts = np.bincount(labels, minlength=num_classes)
    if (counts == 0).any():
        raise UserError(f"train.class_weights=balanced needs every class in the train split; counts {counts.tolist()}")
    return (len(labels) / (num_classes * counts)).tolist()


class AcceptabilityClassifier(L.LightningModule):
    def __init__(self, model_dir: Path, shape: ModelShape, cfg: TrainConfig, class_weights: list[float] | None):
        """class_weights: the loss's weight per class; None is plain cross-entropy."""
        super().__init__()
        self.cfg = cfg
        self.save_hyperparameters({"model": asdict(shape), "train": asdict(cfg)})  # primitives: the trackers' params
        self.classifier = load_classifier(model_dir, shape.pooling, shape.num_layers, **dropout_options(cfg.dropout))
        freeze_bottom(self.classifier.model, cfg)
        reinit_top(self.classifier.model, cfg)
        # A buffer, so it follows the module to the device.
        self.register_buffer(
            "class_weights", None if class_weights is None else torch.tensor(class_weights), persistent=False
        )
        self.classifier.train()  # from_pretrained returns eval mode, and Lightning keeps submodules' modes
        self.train_mcc, self.val_mcc = BinaryMatthewsCorrCoef(), BinaryMatthewsCorrCoef()
        self.val_accuracy = BinaryAccuracy()
        self.calibration_mcc = BinaryMatthewsCorrCoef()  # the held-out rows that pick the epoch (SELECT_ON)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.classifier(input_ids, attention_mask)

    def loss(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        """Cross-entropy on the gold labels; with a teacher, mixed with the distillation loss on its logits."""
        hp, labels = self.cfg, batch["labels"]
        if "teacher_logits" not in batch or hp.distill_weight == 0:
            return F.cross_entropy(logits, labels, weight=self.class_weights, label_smoothing=hp.label_smoothing)
        gold = labels >= 0  # perturbed sentences have only the teacher's logits (label -1)
        hard = logits.new_zeros(())
        if gold.any():
            hard = F.cross_entropy(
                logits[gold], labels[gold], weight=self.class_weights, label_smoothing=hp.label_smoothing
            )
        t = hp.distill_temperature  # Hinton et al.: soft targets at T, the gradient scaled back by T^2
        soft = F.kl_div(
            F.log_softmax(logits / t, dim=-1),
            F.log_softmax(batch["teacher_logits"] / t, dim=-1),
            reduction="batchmean",
            log_target=True,
        ) * (t * t)
        return (1 - hp.distill_weight) * hard + hp.distill_weight * soft

    def step(self, batch: dict, split: str) -> torch.Tensor:
        logits = self(batch["input_ids"], batch["attention_mask"])
        loss = self.loss(logits, batch)
        gold = batch["labels"] >= 0
        predictions, labels = logits.argmax(dim=-1)[gold], batch["labels"][gold]
        on_step = split == "train"
        log = {"on_step": on_step, "on_epoch": not on_step, "add_dataloader_idx": False}
        self.log(f"{split}/loss", loss, prog_bar=split != "calibration", batch_size=len(logits), **log)
        if split == "train":
            self.train_mcc.update(predictions, labels)
            self.log("train/mcc", self.train_mcc, on_step=False, on_epoch=True)
        elif split == "calibration":
            self.calibration_mcc.update(predictions, labels)
            self.log(SELECT_ON, self.calibration_mcc, **log)
        else:
            self.val_mcc.update(predictions, labels)
            self.val_accuracy.update(predictions, labels)
            self.log("val/mcc", self.val_mcc, prog_bar=True, **log)
            self.log("val/accuracy", self.val_accuracy, **log)
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self.step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.step(batch, ("val", "calibration")[dataloader_idx])  # the order of ColaDataModule.val_dataloader

    def configure_optimizers(self):
        hp, model = self.cfg, self.classifier.model
        groups = parameter_groups(model, hp, model.config.num_hidden_layers)
        # The fused kernel is faster than the per-tensor loop on CPU (docs/decisions.md), and exists on CUDA too.
        optimizer = torch.optim.AdamW(groups, lr=hp.learning_rate, fused=True)
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = get_linear_schedule_with_warmup(optimizer, int(total * hp.warmup_ratio), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

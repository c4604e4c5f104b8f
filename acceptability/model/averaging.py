"""Lightning's weight averaging for training: an EMA of the parameters, or their plain mean over the last epochs."""

import lightning as L
import torch

from acceptability.core.config import TrainConfig


def weight_averaging(train: TrainConfig) -> list[L.Callback]:
    """The averaging callback `train` asks for, if any. Validation, checkpoints and the kept model use the average.
    Buffers are left out: the encoder's are constant integers."""
    from lightning.pytorch.callbacks import WeightAveraging
    from torch.optim.swa_utils import get_ema_multi_avg_fn

    if train.ema_decay is not None:
        return [WeightAveraging(use_buffers=False, multi_avg_fn=get_ema_multi_avg_fn(train.ema_decay))]
    first_epoch = train.first_averaged_epoch()
    if first_epoch is None:
        return []
    frozen: set[int] = set()  # storage of parameters that never change: their mean is themselves

    def running_mean(averaged: torch.Tensor, current: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        """torch's SWA update, averaged + (current - averaged) / (count + 1), done in place (the same bits with one
        temporary instead of three) and skipped for frozen parameters: on CPU, torch runs it tensor by tensor, and
        the frozen embeddings are half the weights."""
        if current.data_ptr() in frozen:
            return averaged
        return averaged.add_((current - averaged).div_(count + 1))

    class FromEpoch(WeightAveraging):
        def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
            return step_idx is not None and self.running.current_epoch + 1 >= first_epoch

        def setup(self, trainer: L.Trainer, module: L.LightningModule, stage: str) -> None:
            self.running = trainer
            self.note_frozen(module)
            super().setup(trainer, module, stage)

        @staticmethod
        def note_frozen(module: torch.nn.Module) -> None:
            frozen.update(p.data_ptr() for p in module.parameters() if not p.requires_grad)

        def begun(self) -> bool:  # before its first update the average is the pretrained model: validate the live one
            return self._average_model is not None and int(self._average_model.n_averaged) > 0

        def on_validation_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
            if self.begun():
                super().on_validation_epoch_start(trainer, module)

        def on_validation_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
            if self.begun():
                super().on_validation_epoch_end(trainer, module)

    return [FromEpoch(use_buffers=False, avg_fn=running_mean)]

"""The model phase: the LightningModule and DataModule, training, evaluation, tracking and the teacher."""

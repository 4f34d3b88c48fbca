"""Lightning glue: the generic LightningModule, callbacks, optimisers, run folders, checkpoints, trainer."""

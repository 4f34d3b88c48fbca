"""Text detection. Shared here: datasets, augmentation, FPN necks and the timm backbone, region screening for
targets, the metric, pictures and the numpy/ONNX inference dispatcher; one folder per model family (``dbnet/``,
``psenet/``) with its head, targets, loss and post-processing."""

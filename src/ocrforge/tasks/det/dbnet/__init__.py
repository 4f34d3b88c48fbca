"""The DBNet family (differentiable binarisation): head and model, targets, loss, post-processing."""

"""The PSENet family (progressive scale expansion), lite: head and model, targets, loss, post-processing."""

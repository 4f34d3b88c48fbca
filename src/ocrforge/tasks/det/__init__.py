"""Text detection: DBNet family."""

"""Image / document classification: document type, page and text-line orientation."""

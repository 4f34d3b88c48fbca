"""Task folders: everything one task needs. Importing this package must stay free of torch (ONNX-only path)."""

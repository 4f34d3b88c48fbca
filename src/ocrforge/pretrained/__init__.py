"""Pretrained starting points: PP-OCR models imported from the ONNX files that pip packages ship."""

"""ONNX export with a parity check, and ONNX Runtime inference that needs no torch."""

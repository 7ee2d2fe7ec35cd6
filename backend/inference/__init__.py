"""Inference runtime: ONNX sessions, post-processing and the Predictor (numpy + scipy + onnxruntime, no torch)."""

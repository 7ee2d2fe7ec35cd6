"""ONNX export of the generator, metadata and int8 quantisation (torch needed; not used at run time)."""

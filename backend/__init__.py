"""Auto Skin backend: rig data, features, models, training, evaluation, export and inference.

The runtime part (``backend.rig``, ``backend.io``, ``backend.features``, ``backend.inference``)
imports with numpy, scipy and onnxruntime alone; torch is only needed for training and export.
"""
__version__ = "0.1.0"

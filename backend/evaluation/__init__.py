"""Evaluation of skin weights: metrics, deformation error, baseline methods, the evaluate runner, pictures.

Pure numpy (+ matplotlib for pictures); methods that need other packages import them lazily.
"""

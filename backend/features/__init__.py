"""Geometry and learning features shared by training and inference (numpy + scipy only)."""

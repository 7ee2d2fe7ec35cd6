"""Procedural rigged creatures: unlabelled training data and the built-in sample character.

``generate_creature(seed, index)`` / ``generate(count, seed)`` build rigs without weights;
``sample_character()`` is the demo humanoid; ``iter_unlabelled(dirs)`` reads any folder of
rigs with the weights dropped. See docs/synth.md.
"""
from backend.synth.creature import KINDS, generate, generate_creature, plan, sample_character, schedule

__all__ = ["KINDS", "generate", "generate_creature", "plan", "sample_character", "schedule"]

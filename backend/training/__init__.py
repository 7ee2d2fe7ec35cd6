"""SS-WGAN training of the generator: config, data, losses, trainer, checkpoints, DDP, plots.

torch lives here; nothing in this package is imported by the Blender add-on.
"""

"""File formats: the project's .npz layout, RigNet text rigs, atomic writes."""

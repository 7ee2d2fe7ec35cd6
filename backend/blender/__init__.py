"""Everything bpy in the backend: scene <-> Rig, file import/export, Blender bone heat."""

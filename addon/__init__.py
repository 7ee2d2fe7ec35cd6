"""Auto Skin for Blender: learned skinning weights for any rig.

Entry points: 3D viewport sidebar > Auto Skin, and Object > Parent > With Auto Skin Weights.
The runtime (``backend``) is vendored in the extension (see ``_bootstrap``).
"""
from __future__ import annotations

from . import _bootstrap

_bootstrap.ensure_backend()

import bpy  # noqa: E402

from . import export_corrections, operators, panel, preferences  # noqa: E402

CLASSES = (
    preferences.AUTOSKIN_AP_preferences,
    operators.AUTOSKIN_OT_auto_skin,
    export_corrections.AUTOSKIN_OT_export_corrections,
    panel.AUTOSKIN_PT_panel,
)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.VIEW3D_MT_object_parent.append(panel.parent_menu_entry)


def unregister() -> None:
    bpy.types.VIEW3D_MT_object_parent.remove(panel.parent_menu_entry)
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
    operators._PREDICTORS.clear()
    _bootstrap.release_backend()

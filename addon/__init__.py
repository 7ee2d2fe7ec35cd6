"""Auto Skin for Blender: learned skinning weights for any rig.

Entry points: 3D viewport sidebar > Auto Skin, and Object > Parent > With Auto Skin Weights.
The runtime (``backend``) is vendored in the extension (see ``_bootstrap``). ``register`` puts it on
``sys.path`` and imports the add-on's modules; ``unregister`` unloads both, so that disabling and
enabling the add-on in one session (or installing a new version) runs on a fresh runtime.
"""
from __future__ import annotations

import importlib

import bpy

from . import _bootstrap

#: The add-on's modules that import the runtime, in import order.
MODULES = ("preferences", "gather", "combine", "apply", "export_corrections", "operators", "panel")


def _module(name: str):
    return importlib.import_module(f"{__name__}.{name}")


def _classes() -> tuple:
    preferences, operators = _module("preferences"), _module("operators")
    export_corrections, panel = _module("export_corrections"), _module("panel")
    return (preferences.AUTOSKIN_AP_preferences, operators.AUTOSKIN_OT_auto_skin,
            export_corrections.AUTOSKIN_OT_export_corrections, panel.AUTOSKIN_PT_panel)


def register() -> None:
    _bootstrap.ensure_backend()
    for name in MODULES:
        _module(name)
    for cls in _classes():
        bpy.utils.register_class(cls)
    preferences = _module("preferences")
    preferences.migrate(preferences.get_preferences())
    bpy.types.VIEW3D_MT_object_parent.append(_module("panel").parent_menu_entry)


def unregister() -> None:
    bpy.types.VIEW3D_MT_object_parent.remove(_module("panel").parent_menu_entry)
    for cls in reversed(_classes()):
        bpy.utils.unregister_class(cls)
    _module("operators")._PREDICTORS.clear()
    _bootstrap.release_backend()
    _bootstrap.forget_modules(__name__, MODULES)

"""Auto Skin for Blender: learned skinning weights for any rig.

Entry points: 3D viewport sidebar > Auto Skin, Object > Parent > With Auto Skin Weights, and the
Ctrl+P popup when an armature is active and a mesh selected (``parent_menu``).
The runtime (the project's ``backend``) is vendored in the extension as this package's own
subpackage ``runtime`` (see ``_bootstrap``). ``register`` imports it and the add-on's modules;
``unregister`` unloads both, so that disabling and enabling the add-on in one session (or installing
a new version) runs on a fresh runtime.
"""
from __future__ import annotations

import importlib

import bpy

from . import _bootstrap

#: The add-on's modules that import the runtime, in import order.
MODULES = ("preferences", "gather", "combine", "apply", "export_corrections", "job", "operators", "panel",
           "parent_menu")


def _module(name: str):
    return importlib.import_module(f"{__name__}.{name}")


def _classes() -> tuple:
    preferences, operators = _module("preferences"), _module("operators")
    export_corrections, panel, parent_menu = _module("export_corrections"), _module("panel"), _module("parent_menu")
    return (preferences.AUTOSKIN_AP_preferences, operators.AUTOSKIN_OT_auto_skin,
            export_corrections.AUTOSKIN_OT_export_corrections, panel.AUTOSKIN_PT_panel,
            parent_menu.AUTOSKIN_MT_parent_set)


def register() -> None:
    _bootstrap.ensure_runtime()
    for name in MODULES:
        _module(name)
    for cls in _classes():
        bpy.utils.register_class(cls)
    preferences, parent_menu = _module("preferences"), _module("parent_menu")
    preferences.migrate(preferences.get_preferences())
    bpy.types.VIEW3D_MT_object_parent.append(parent_menu.parent_menu_entry)
    parent_menu.register_keymaps()


def unregister() -> None:
    parent_menu = _module("parent_menu")
    parent_menu.unregister_keymaps()
    bpy.types.VIEW3D_MT_object_parent.remove(parent_menu.parent_menu_entry)
    for cls in reversed(_classes()):
        bpy.utils.unregister_class(cls)
    _module("operators")._PREDICTORS.clear()
    _bootstrap.release_runtime()
    _bootstrap.forget_modules(__name__, MODULES)

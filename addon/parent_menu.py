"""Auto Skin in the parenting menus: Object > Parent, and the Ctrl+P popup.

Blender builds the Ctrl+P popup (``object.parent_set`` without a type) in C, so Python cannot add to
it. The add-on maps Ctrl+P in the Object Mode and Pose keymaps of the add-on key configuration
(which come before Blender's own) to :class:`AUTOSKIN_MT_parent_set`: Blender's entries for an
armature parent in Blender's order, with *With Auto Skin Weights* after *With Automatic Weights*.
The menu shows only when the active object is an armature and a mesh is selected; otherwise its poll
fails, the key passes through and Blender's own popup opens.
"""
from __future__ import annotations

import bpy

from .operators import AUTOSKIN_OT_auto_skin

LABEL = "With Auto Skin Weights"
KEYMAPS = ("Object Mode", "Pose")

_keymap_items: list = []


def parent_menu_entry(self, context) -> None:
    """Object > Parent: 'With Auto Skin Weights' below Blender's entries."""
    self.layout.separator()
    self.layout.operator(AUTOSKIN_OT_auto_skin.bl_idname, text=LABEL, icon="ARMATURE_DATA")


def wants_menu(context) -> bool:
    """Ctrl+P offers Auto Skin: Object or Pose Mode, an armature active and a mesh selected."""
    active = context.active_object
    return (context.mode in {"OBJECT", "POSE"} and active is not None and active.type == "ARMATURE"
            and any(o.type == "MESH" and o != active for o in context.selected_objects))


def _type_name(identifier: str) -> str:
    items = bpy.ops.object.parent_set.get_rna_type().properties["type"].enum_items
    return bpy.app.translations.pgettext_iface(items[identifier].name)


class AUTOSKIN_MT_parent_set(bpy.types.Menu):
    """Blender's Ctrl+P popup for an armature parent, with Auto Skin added"""

    bl_idname = "AUTOSKIN_MT_parent_set"
    bl_label = "Set Parent To"

    @classmethod
    def poll(cls, context) -> bool:
        return wants_menu(context)

    def draw(self, context) -> None:
        layout = self.layout
        layout.operator_context = "EXEC_REGION_WIN"
        iface = bpy.app.translations.pgettext_iface
        for text, keep in (("Object", False), ("Object (Keep Transform)", True)):
            props = layout.operator("object.parent_set", text=iface(text))
            props.type, props.keep_transform = "OBJECT", keep
        for text, keep in (("Object (Without Inverse)", False), ("Object (Keep Transform Without Inverse)", True)):
            layout.operator("object.parent_no_inverse_set", text=iface(text)).keep_transform = keep
        grease_pencil = any(o.type == "GPENCIL" for o in context.selected_objects if o != context.active_object)
        kinds = ["ARMATURE", "ARMATURE_NAME"] + ([] if grease_pencil else ["ARMATURE_ENVELOPE"]) + ["ARMATURE_AUTO"]
        for kind in kinds:
            layout.operator("object.parent_set", text=_type_name(kind)).type = kind
        indent = _type_name("ARMATURE_AUTO")[:-len(_type_name("ARMATURE_AUTO").lstrip())]
        layout.operator_context = "INVOKE_REGION_WIN"  # Auto Skin's invoke: progress in the status bar, Esc
        layout.operator(AUTOSKIN_OT_auto_skin.bl_idname, text=indent + LABEL)
        layout.operator_context = "EXEC_REGION_WIN"
        for kind in ("BONE", "BONE_RELATIVE"):
            layout.operator("object.parent_set", text=_type_name(kind)).type = kind


def register_keymaps() -> None:
    """Ctrl+P -> :class:`AUTOSKIN_MT_parent_set` in the add-on key configuration (absent: nothing)."""
    keyconfig = bpy.context.window_manager.keyconfigs.addon
    if keyconfig is None:
        return
    for name in KEYMAPS:
        keymap = keyconfig.keymaps.new(name=name, space_type="EMPTY")
        item = keymap.keymap_items.new("wm.call_menu", "P", "PRESS", ctrl=True)
        item.properties.name = AUTOSKIN_MT_parent_set.bl_idname
        _keymap_items.append((keymap, item))


def unregister_keymaps() -> None:
    for keymap, item in _keymap_items:
        keymap.keymap_items.remove(item)
    _keymap_items.clear()

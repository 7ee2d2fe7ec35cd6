"""The sidebar panel (3D viewport > N > Auto Skin)."""
from __future__ import annotations

import bpy

from . import preferences
from .export_corrections import AUTOSKIN_OT_export_corrections
from .operators import AUTOSKIN_OT_auto_skin


class AUTOSKIN_PT_panel(bpy.types.Panel):
    bl_label = "Auto Skin"
    bl_idname = "AUTOSKIN_PT_panel"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Auto Skin"

    def draw(self, context):
        layout = self.layout
        arms = [o for o in context.selected_objects if o.type == "ARMATURE"]
        meshes = [o for o in context.selected_objects if o.type == "MESH"]
        col = layout.column(align=True)
        col.label(text=f"{len(meshes)} mesh(es), {len(arms)} armature(s) selected")
        row = col.row()
        row.scale_y = 1.5
        row.operator(AUTOSKIN_OT_auto_skin.bl_idname, icon="ARMATURE_DATA")
        prefs = preferences.get_preferences(context)
        if prefs is not None:
            box = layout.box()
            box.label(text="Defaults (Preferences)")
            box.use_property_split = True
            for name in ("mode", "max_influences", "device"):
                box.prop(prefs, name)
        layout.separator()
        layout.operator(AUTOSKIN_OT_export_corrections.bl_idname, icon="EXPORT")
        layout.label(text=f"To: {preferences.export_dir(prefs)}")

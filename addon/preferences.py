"""Add-on preferences: the defaults of every Auto Skin option, the model file and the export folder."""
from __future__ import annotations

import os

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

from . import _bootstrap

ADDON_ID = __package__

MODE_ITEMS = [
    ("LEARNED", "Learned", "The trained network (ONNX model), refined by the geodesic prior"),
    ("GEODESIC", "Geodesic", "Volumetric geodesic distances only (no model needed)"),
    ("HEAT", "Heat", "Heat diffusion from the bones, like Blender's bone heat but never failing (no model needed); "
                     "the most robust on characters unlike the training data"),
]
DEVICE_ITEMS = [
    ("AUTO", "Auto", "CUDA when onnxruntime offers it, else CPU"),
    ("CPU", "CPU", "Always run on the CPU"),
    ("CUDA", "CUDA", "NVIDIA GPU (needs an onnxruntime build with CUDA)"),
]
OPTION_NAMES = ("mode", "max_influences", "prune_threshold", "smoothing", "diffusion", "device", "model_path",
                "network_share", "sharpness", "enclosing_parts", "skip_helper_bones", "rigid_pieces",
                "only_selected_bones", "only_selected_vertices", "respect_locked")
LEARNED_ONLY = ("model_path", "network_share", "sharpness", "enclosing_parts", "rigid_pieces")
"""Options that mean something in the Learned mode only (hidden in the others)."""

MODEL_OWN = {"smoothing": -1, "diffusion": -1.0, "network_share": -1.0, "sharpness": 0.0, "enclosing_parts": -1.0}
"""Settings the model stores, each with its default, which means "the model's own setting"."""
VALID_FROM = {"smoothing": 0, "diffusion": 0.0, "network_share": 0.0, "sharpness": 1.0, "enclosing_parts": 0.0}
"""The smallest value of each setting that overrides the model; anything below means the model's own."""
SETTINGS_VERSION = 2
"""Version 1 (no ``settings_version`` stored) had a "Set X" toggle beside each value of MODEL_OWN."""


RUNTIME_SETTINGS = {"network_share": "prior_blend", "sharpness": "sharpen", "smoothing": "smooth",
                    "diffusion": "diffuse", "prune_threshold": "prune", "enclosing_parts": "enclosing_pieces"}
"""The options that set the runtime's post-network settings, each with the name of the setting it sets
(a field of backend.inference.runtime_settings.RuntimeSettings)."""


def override(name: str, value: float) -> float | None:
    """The value of setting ``name`` (one of MODEL_OWN) to pass to the runtime; None: the model's own."""
    return None if value < VALID_FROM[name] else value


def runtime_overrides(opt: dict) -> dict:
    """The run-time settings the options ``opt`` (option name -> value) choose, by setting name: what
    ``RuntimeSettings.with_overrides`` takes. Left out: a setting at "the model's own" (MODEL_OWN) and,
    outside the Learned mode, the Learned-only ones (LEARNED_ONLY)."""
    learned = opt["mode"] == "LEARNED"
    out = {}
    for name, setting in RUNTIME_SETTINGS.items():
        if name in LEARNED_ONLY and not learned:
            continue
        value = override(name, opt[name]) if name in MODEL_OWN else opt[name]
        if value is not None:
            out[setting] = int(value) if setting == "smooth" else value
    return out


def option_label(values, name: str) -> str | None:
    """Label for drawing option ``name`` of ``values`` (the preferences, or an operator's
    ``properties``): '<Name> (model's own)' while it is below VALID_FROM, else None (its own name)."""
    if name in MODEL_OWN and override(name, getattr(values, name)) is None:
        return f"{values.bl_rna.properties[name].name} (model's own)"
    return None


def option_properties(operator: bool) -> dict:
    """Fresh bpy property definitions of the Auto Skin options (``operator``: not remembered
    between calls, so that a new call starts from the preferences)."""
    opts = {"options": {"SKIP_SAVE"}} if operator else {}
    return {
        "mode": EnumProperty(name="Mode", items=MODE_ITEMS, default="LEARNED", **opts),
        "max_influences": IntProperty(
            name="Max Influences", default=4, min=0, max=16,
            description="Most bones per vertex (0: no limit); 4 is what game engines accept", **opts),
        "prune_threshold": FloatProperty(
            name="Prune", default=0.05, min=0.0, max=0.5, precision=3,
            description="Small weights fade out: a weight at or above this stays whole, one below 80 % of it "
                        "is removed, the ones between are scaled down; each vertex is renormalised and keeps "
                        "its largest weight", **opts),
        "smoothing": IntProperty(
            name="Smoothing", default=MODEL_OWN["smoothing"], min=-1, max=20,
            description="Laplacian smoothing iterations over the mesh edges (0: none). -1: the model's own "
                        "setting (the shipped model and the Geodesic and Heat modes do not smooth)", **opts),
        "diffusion": FloatProperty(
            name="Diffusion", default=MODEL_OWN["diffusion"], min=-1.0, max=5.0, precision=2, subtype="PERCENTAGE",
            description="Blur the weights over the surface, reach in % of the character's size: the same on a "
                        "dense and a low-poly mesh, unlike Smoothing (0: none). Negative: the model's own "
                        "setting (see the model card; the Geodesic and Heat modes do not diffuse)", **opts),
        "device": EnumProperty(name="Device", items=DEVICE_ITEMS, default="AUTO", **opts),
        "model_path": StringProperty(
            name="Model", subtype="FILE_PATH", default="",
            description="ONNX model file (empty: the model bundled with the extension)", **opts),
        "network_share": FloatProperty(
            name="Network Share", default=MODEL_OWN["network_share"], min=-1.0, max=1.0, precision=2,
            description="Learned mode: how much of the result comes from the network, the rest from the heat "
                        "prior. 1: the network alone (closest to the training artists' style); 0: the heat "
                        "prior alone (physically based, no style). Negative: the model's own mix (see the model "
                        "card)",
            **opts),
        "sharpness": FloatProperty(
            name="Sharpness", default=MODEL_OWN["sharpness"], min=0.0, max=10.0, precision=2,
            description="Learned mode: power the weights are raised to before the influence limit: 1 keeps "
                        "the network's smooth falloff (for characters painted smoothly across several bones), "
                        "higher values give crisper borders between bones. Below 1: the model's own setting "
                        "(see the model card)", **opts),
        "enclosing_parts": FloatProperty(
            name="Enclosing Parts", default=MODEL_OWN["enclosing_parts"], min=-1.0, max=1.0, precision=2,
            description="Learned mode: a separate part whose hull holds the middle of exactly one bone (a box of "
                        "a block-built mob, a robot's limb) goes to that bone alone when it holds less than this "
                        "share of the surface (0: never). Negative: the model's own setting (see the model card)",
            **opts),
        "skip_helper_bones": BoolProperty(
            name="Skip Helper Bones", default=True,
            description="Leave bones that never carry skin empty even when they are marked Deform: "
                        "chain-end leaf bones added by exporters (*_end, *Nub) and IK pole targets", **opts),
        "rigid_pieces": BoolProperty(
            name="Rigid Separate Parts", default=False,
            description="Learned mode: put each small separate part (eye, gun, armour plate) on a single bone "
                        "when the network and the geometry agree on it. For robots and props; characters "
                        "with smoothly painted separate fins or legs are better without", **opts),
        "only_selected_bones": BoolProperty(
            name="Only Selected Bones", default=False,
            description="Weight only the selected bones (pose or edit mode selection); the other "
                        "bones' groups stay as they are", **opts),
        "only_selected_vertices": BoolProperty(
            name="Only Selected Vertices", default=False,
            description="Write only the selected vertices (and any vertex without weights); "
                        "the prediction still uses the whole mesh", **opts),
        "respect_locked": BoolProperty(
            name="Respect Locked Groups", default=True,
            description="Locked vertex groups keep their weights exactly; the others fill the rest", **opts),
    }


_VERSION_ITEMS: list = []  # Blender needs the strings of dynamic enum items kept alive


def _model_versions(models_dir: str) -> list:
    """Complete model versions in ``models_dir`` (oldest first); [] when unset or unreadable."""
    if not models_dir:
        return []
    _bootstrap.ensure_runtime()
    from backend.inference.model_store import list_models

    try:
        return list_models(bpy.path.abspath(models_dir))
    except OSError:
        return []


def _version_items(self, context):
    items = [("BUNDLED", "Bundled", "The model shipped with the extension"),
             ("NEWEST", "Newest", "The newest complete version in the models folder")]
    for i, m in enumerate(_model_versions(getattr(self, "models_dir", ""))):
        items.append((f"V{m.version}", m.label, str(m.onnx), i + 2))
    items[0] = (*items[0], 0)
    items[1] = (*items[1], 1)
    _VERSION_ITEMS[:] = items
    return _VERSION_ITEMS


def chosen_model(prefs) -> str:
    """The model file the preferences choose: a version of the models folder, or the bundled one."""
    choice = getattr(prefs, "model_version", "BUNDLED") if prefs is not None else "BUNDLED"
    versions = _model_versions(getattr(prefs, "models_dir", "")) if prefs is not None else []
    if choice == "NEWEST" and versions:
        return str(versions[-1].onnx)
    for m in versions:
        if choice == f"V{m.version}":
            return str(m.onnx)
    return _bootstrap.default_model_path()


def default_export_dir() -> str:
    """<Blender user data folder>/autoskin/corrections."""
    base = bpy.utils.user_resource("DATAFILES", path="autoskin")
    return os.path.join(base, "corrections")


class AUTOSKIN_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID
    __annotations__ = {
        **option_properties(operator=False),
        "models_dir": StringProperty(
            name="Models Folder", subtype="DIR_PATH", default="",
            description="Folder of versioned models published by 'python -m backend finetune' "
                        "(autoskin-vN.onnx + card); empty: only the bundled model"),
        "model_version": EnumProperty(
            name="Model Version", items=_version_items,
            description="Which model Learned mode uses when no model file is given"),
        "export_dir": StringProperty(
            name="Corrections Folder", subtype="DIR_PATH", default="",
            description="Where 'Export Corrected Weights' writes training files (empty: Blender's "
                        "user data folder / autoskin / corrections)"),
        "settings_version": IntProperty(name="Settings Version", default=1, options={"HIDDEN"}),
    }

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        col = layout.column(heading="Defaults")
        for name in OPTION_NAMES:
            if name != "model_path":
                col.prop(self, name, text=option_label(self, name))
        layout.prop(self, "model_path")
        layout.label(text=f"Bundled model: {_bootstrap.default_model_path()}")
        layout.prop(self, "models_dir")
        layout.prop(self, "model_version")
        layout.prop(self, "export_dir")
        layout.label(text=f"Export folder in use: {export_dir(self)}")


def stored_values(prefs):
    """The ID property group that holds the saved values of ``prefs`` (also those of properties this
    version no longer defines), or None: Blender 5.0+ keeps them apart (``bl_system_properties_get``),
    older versions in the struct's own ID properties."""
    getter = getattr(prefs, "bl_system_properties_get", None)
    return getter() if getter is not None else prefs


def migrate(prefs) -> None:
    """Bring preferences saved by an older version up to SETTINGS_VERSION: a value whose "Set X" toggle
    was off (or never stored) becomes the model's own setting, as it acted; the toggles are dropped."""
    if prefs is None or prefs.settings_version >= SETTINGS_VERSION:
        return
    stored = stored_values(prefs)
    for name, own in MODEL_OWN.items():
        toggle = "set_" + name
        if stored is None or not stored.get(toggle, False):
            setattr(prefs, name, own)
        if stored is not None and toggle in stored:
            del stored[toggle]
    prefs.settings_version = SETTINGS_VERSION


def get_preferences(context=None):
    """The add-on's preferences, or None when the add-on is not registered as ``ADDON_ID``."""
    context = context or bpy.context
    addon = context.preferences.addons.get(ADDON_ID)
    return None if addon is None else addon.preferences


def export_dir(prefs) -> str:
    """The export folder the preferences choose (absolute)."""
    path = getattr(prefs, "export_dir", "") if prefs is not None else ""
    return bpy.path.abspath(path) if path else default_export_dir()


def model_path(path: str) -> str:
    """An absolute model path: ``path`` (Blender-relative allowed), else the version the
    preferences choose (bundled by default)."""
    return bpy.path.abspath(path) if path else chosen_model(get_preferences())

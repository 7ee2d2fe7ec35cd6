"""build_addon.py: zip layout, manifest, vendored runtime, Blender's validator, wheels."""
from __future__ import annotations

import ast
import importlib.util
import os
import tomllib
import zipfile
from pathlib import Path

import pytest

import build_addon

ROOT = Path(__file__).resolve().parents[1]
WHEEL_CACHE = ROOT / "dist" / "wheels-cache"


def _members(zip_path: Path) -> set[str]:
    with zipfile.ZipFile(zip_path) as zf:
        return set(zf.namelist())


def _manifest(zip_path: Path) -> dict:
    with zipfile.ZipFile(zip_path) as zf:
        return tomllib.loads(zf.read("blender_manifest.toml").decode())


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_addon.build_platform("linux-x64", tmp_path_factory.mktemp("dist"), wheels=False, model=False)


def test_layout_and_manifest(built):
    names = _members(built.zip_path)
    assert built.zip_path.name == f"autoskin-{build_addon.version()}-linux-x64.zip"
    for need in ("blender_manifest.toml", "__init__.py", "operators.py", "panel.py", "preferences.py",
                 "export_corrections.py", "runtime/__init__.py", "runtime/rig.py",
                 "runtime/io/npz.py", "runtime/io/atomic.py", "runtime/blender/scene.py",
                 "runtime/inference/predictor.py", "runtime/inference/runtime_settings.py",
                 "runtime/features/geodesic.py"):
        assert need in names, need
    # training-only code stays out; nothing goes in as a top-level package
    assert not any(n.startswith(("runtime/models/", "runtime/training/", "runtime/export/",
                                 "runtime/cli/")) for n in names)
    assert not any(n.startswith(("vendor/", "backend/")) for n in names)
    assert not any("__pycache__" in n for n in names)
    m = _manifest(built.zip_path)
    assert m["schema_version"] == "1.0.0" and m["id"] == "autoskin" and m["type"] == "add-on"
    assert m["blender_version_min"] == "4.2.0" and m["license"] == ["SPDX:GPL-3.0-or-later"]
    assert m["platforms"] == ["linux-x64"] and "wheels" not in m
    assert set(m["permissions"]) == {"files"}  # no network
    assert built.wheels == [] and not built.has_model


def _imports(text: str, package: str) -> list[str]:
    """The absolute module of every ``from ... import`` in ``text`` (relative ones resolved in ``package``)."""
    return [importlib.util.resolve_name("." * node.level + (node.module or ""), package) if node.level
            else node.module for node in ast.walk(ast.parse(text)) if isinstance(node, ast.ImportFrom)]


def test_vendored_files_are_the_repository_files(built):
    """Each .py in the zip is its repository file with only the heads of its ``backend`` imports
    changed: relative ones that resolve to the same module under the add-on's ``runtime`` subpackage."""
    pkg = "bl_ext.user_default.autoskin"
    with zipfile.ZipFile(built.zip_path) as zf:
        files = [n for n in zf.namelist() if n.endswith(".py")]
        assert len([n for n in files if n.startswith("runtime/")]) == len(built.modules)
        for n in files:
            src = ROOT / ("backend/" + n[len("runtime/"):] if n.startswith("runtime/") else "addon/" + n)
            text, orig = zf.read(n).decode(), src.read_text(encoding="utf-8")
            package = ".".join([pkg] + n.split("/")[:-1])
            assert _imports(text, package) == [
                (pkg + ".runtime" + m[len("backend"):]) if m.split(".")[0] == "backend" else m
                for m in _imports(orig, package)], n
            changed = [(a, b) for a, b in zip(orig.splitlines(), text.splitlines()) if a != b]
            assert len(orig.splitlines()) == len(text.splitlines()), n
            assert all(a.lstrip().startswith("from backend") and b.lstrip().startswith("from .")
                       for a, b in changed), (n, changed)
            assert "backend" not in {m.split(".")[0] for m in build_addon._backend_imports(src, text)}, n
            assert "import torch" not in text and "from torch" not in text, n
            if "backend" not in orig:
                assert zf.read(n) == src.read_bytes(), n


def test_import_forms_that_cannot_be_vendored_are_refused(tmp_path, monkeypatch):
    (tmp_path / "backend" / "io").mkdir(parents=True)
    monkeypatch.setattr(build_addon, "ROOT", tmp_path)
    ok = tmp_path / "backend" / "io" / "x.py"
    ok.write_text("import numpy\nimport backend.io.npz as npz\nfrom backend import rig\n"
                  "def f():\n    from backend.rig import (Rig,\n                             RigError)\n")
    assert build_addon.vendored_source(ok) == ("import numpy\nfrom ..io import npz as npz\nfrom .. import rig\n"
                                               "def f():\n    from ..rig import (Rig,\n"
                                               "                             RigError)\n")
    for bad in ("import backend.rig\n", "import os, backend.rig as r\n"):
        ok.write_text(bad)
        with pytest.raises(build_addon.BuildError, match="x.py:1: write this import"):
            build_addon.vendored_source(ok)


def test_blender_validator_accepts_the_zip(built):
    out = build_addon.validate(built.zip_path)
    assert "error" not in out.lower()


def test_validator_refuses_a_broken_manifest(built, tmp_path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(built.zip_path) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "blender_manifest.toml":
                data = data.replace(b'id = "autoskin"', b'id = "auto skin!"')
            dst.writestr(item, data)
    with pytest.raises(build_addon.BuildError, match="validator"):
        build_addon.validate(bad)


def test_forbidden_import_is_refused(tmp_path, monkeypatch):
    (tmp_path / "backend").mkdir()
    (tmp_path / "backend" / "__init__.py").write_text("")
    (tmp_path / "backend" / "rig.py").write_text("import numpy\n")
    (tmp_path / "backend" / "heavy.py").write_text("def f():\n    import torch\n")
    (tmp_path / "addon").mkdir()
    (tmp_path / "addon" / "__init__.py").write_text("def g():\n    from backend.heavy import f\n")
    monkeypatch.setattr(build_addon, "ROOT", tmp_path)
    files = build_addon.backend_closure([tmp_path / "addon" / "__init__.py"])
    assert [f.as_posix() for f in files] == ["backend/__init__.py", "backend/heavy.py", "backend/rig.py"]
    with pytest.raises(build_addon.BuildError, match="heavy.py.*torch"):
        build_addon.check_runtime_imports(files)


def test_model_is_bundled_when_present(tmp_path, monkeypatch):
    model = tmp_path / "autoskin.onnx"
    model.write_bytes(b"not really a model")
    monkeypatch.setattr(build_addon, "MODEL", model)
    res = build_addon.build_platform("windows-x64", tmp_path / "dist", wheels=False, model=True)
    assert res.has_model and "models/autoskin.onnx" in _members(res.zip_path)
    assert _manifest(res.zip_path)["platforms"] == ["windows-x64"]
    res = build_addon.build_platform("windows-x64", tmp_path / "dist", wheels=False, model=False)
    assert "models/autoskin.onnx" not in _members(res.zip_path)


def test_manifest_text_lists_wheels_before_tables():
    text = build_addon.manifest_text("macos-arm64", ["scipy-1.13.1-cp311-cp311-macosx_12_0_arm64.whl"])
    m = tomllib.loads(text)
    assert m["platforms"] == ["macos-arm64"]
    assert m["wheels"] == ["./wheels/scipy-1.13.1-cp311-cp311-macosx_12_0_arm64.whl"]
    assert m["permissions"]["files"]


def test_wheel_name_matching():
    ok = build_addon._wheel_ok
    name = "onnxruntime-1.23.2-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl"
    assert ok(name, "onnxruntime", "1.23.2", "3.11", "linux-x64")
    assert not ok(name, "onnxruntime", "1.23.2", "3.13", "linux-x64")
    assert not ok(name, "onnxruntime", "1.23.2", "3.11", "windows-x64")
    assert not ok(name, "scipy", "1.23.2", "3.11", "linux-x64")
    assert ok("scipy-1.15.3-cp313-cp313-win_amd64.whl", "scipy", "1.15.3", "3.13", "windows-x64")


def test_unknown_platform_is_refused(tmp_path):
    with pytest.raises(build_addon.BuildError, match="unknown platform"):
        build_addon.build_platform("amiga-m68k", tmp_path, wheels=False)


def _cache_has_linux_wheels() -> bool:
    if not WHEEL_CACHE.is_dir():
        return False
    names = [p.name for p in WHEEL_CACHE.glob("*.whl")]
    return all(any(build_addon._wheel_ok(n, *spec.split("=="), py, "linux-x64") for n in names)
               for py, specs in build_addon.WHEEL_SPECS.items() for spec in specs)


@pytest.mark.skipif(not (_cache_has_linux_wheels() or os.environ.get("AUTOSKIN_BUILD_WHEELS")),
                    reason="no wheel cache in dist/wheels-cache (set AUTOSKIN_BUILD_WHEELS=1 to download)")
def test_build_with_wheels_for_both_pythons(tmp_path):
    res = build_addon.build_platform("linux-x64", tmp_path, wheels=True, model=False, cache=WHEEL_CACHE)
    m = _manifest(res.zip_path)
    assert sorted(m["wheels"]) == sorted(f"./wheels/{w}" for w in res.wheels)
    tags = {w.split("-")[2] for w in res.wheels}
    dists = {w.split("-")[0] for w in res.wheels}
    assert tags == {"cp311", "cp313"} and dists == {"scipy", "onnxruntime"}
    assert {f"wheels/{w}" for w in res.wheels} <= _members(res.zip_path)
    build_addon.validate(res.zip_path)


ISOLATED = """
import os, sys, json
sys.path.insert(0, {sp!r})
try:
    import scipy
    raise SystemExit("scipy importable before the install: not isolated")
except ImportError:
    pass
import bpy
assert bpy.ops.extensions.package_install_files(repo="user_default", filepath={zip!r},
                                                enable_on_install=True) == {{"FINISHED"}}
import scipy, onnxruntime
runtime = sys.modules["bl_ext.user_default.autoskin.runtime"]
bpy.ops.wm.read_homefile(use_empty=True)
bpy.ops.mesh.primitive_uv_sphere_add(radius=1.0)
mesh = bpy.context.object
bpy.ops.object.armature_add(location=(0, 0, -0.5))
mesh.select_set(True)
res = bpy.ops.autoskin.auto_skin(mode="GEODESIC")
print(json.dumps({{"scipy": scipy.__file__, "scipy_version": scipy.__version__, "ort": onnxruntime.__version__,
                  "runtime": runtime.__file__, "result": sorted(res), "groups": [g.name for g in mesh.vertex_groups]}}))
"""


@pytest.mark.skipif(not (_cache_has_linux_wheels() or os.environ.get("AUTOSKIN_BUILD_WHEELS")),
                    reason="no wheel cache in dist/wheels-cache (set AUTOSKIN_BUILD_WHEELS=1 to download)")
def test_blender_installs_the_bundled_wheels(tmp_path):
    """Python without site-packages, only bpy + numpy (what Blender ships): scipy and onnxruntime
    must come from the wheels Blender extracts on install."""
    import json
    import subprocess
    import sys

    import bpy  # noqa: F401  (only to locate it)
    import numpy

    res = build_addon.build_platform("linux-x64", tmp_path / "dist", wheels=True, model=False, cache=WHEEL_CACHE)
    sp = tmp_path / "sp"
    sp.mkdir()
    site = Path(numpy.__file__).resolve().parents[1]
    for name in ("bpy", "numpy", "numpy.libs"):
        if (site / name).exists():
            (sp / name).symlink_to(site / name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["BLENDER_USER_RESOURCES"] = str(tmp_path / "user")
    code = ISOLATED.format(sp=str(sp), zip=str(res.zip_path))
    proc = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "/extensions/.local/lib/python3.11/site-packages/scipy/" in info["scipy"]
    assert info["scipy_version"] == "1.13.1" and info["ort"] == "1.23.2"
    assert "/extensions/user_default/autoskin/runtime/" in info["runtime"]
    assert info["result"] == ["FINISHED"] and info["groups"] == ["Bone"]

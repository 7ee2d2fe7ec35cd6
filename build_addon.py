"""Build the installable Blender extension: one zip per platform in ``dist/``.

    python build_addon.py                          # linux-x64, windows-x64, macos-arm64
    python build_addon.py --platform linux-x64     # just one
    python build_addon.py --platform linux-x64 --no-wheels --validate

Zip layout (the archive root is the add-on package):
    blender_manifest.toml   the repo's manifest + platforms/wheels of this build
    __init__.py ...         addon/*.py
    runtime/...             the runtime modules the add-on imports (an import closure of backend/,
                            copied at build time: the repository keeps the only source copy)
    models/autoskin.onnx    the model, when models/autoskin.onnx exists
    wheels/*.whl            scipy + onnxruntime for Blender's Python versions (Blender ships numpy)

The runtime is vendored under the add-on's own package, not as a top-level ``backend``: every
``import`` of ``backend`` in the copied files (the add-on's and the runtime's) is rewritten to a
relative one (``from backend.rig import X`` becomes ``from .runtime.rig import X`` in an add-on
module and ``from ..rig import X`` in ``runtime/inference/``), so another module named ``backend``
cannot shadow it. Nothing else in the files changes.

Wheels are downloaded once with ``pip download`` into ``dist/wheels-cache/`` (dist/ is ignored by git).
"""
from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

from backend.io.atomic import atomic_path  # noqa: E402

ADDON_DIR = ROOT / "addon"
MANIFEST = ROOT / "blender_manifest.toml"
MODEL = ROOT / "models" / "autoskin.onnx"
PLATFORMS = ("linux-x64", "windows-x64", "macos-arm64")

#: pip --platform tags accepted for each Blender platform.
PIP_PLATFORMS = {
    "linux-x64": ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"],
    "windows-x64": ["win_amd64"],
    "macos-arm64": ["macosx_11_0_arm64", "macosx_12_0_arm64", "macosx_13_0_arm64", "macosx_14_0_arm64",
                    "macosx_11_0_universal2", "macosx_13_0_universal2"],
}

#: Python of each Blender line -> the wheels it needs. Blender 4.2-5.0 run CPython 3.11, 5.1+ CPython 3.13.
#: scipy 1.13.1 has no cp313 wheels, so Blender 5.1+ gets scipy 1.15.3. onnxruntime's own Requires-Dist
#: (coloredlogs, flatbuffers, packaging, protobuf, sympy) serve its tools, not InferenceSession: not bundled.
WHEEL_SPECS = {
    "3.11": ["scipy==1.13.1", "onnxruntime==1.23.2"],
    "3.13": ["scipy==1.15.3", "onnxruntime==1.23.2"],
}

#: The add-on's subpackage that holds the vendored runtime (addon/_bootstrap.RUNTIME).
RUNTIME_PACKAGE = "runtime"

#: Packages always vendored (with their __init__), besides the import closure of the add-on.
VENDOR_ROOTS = ("backend/__init__.py", "backend/rig.py", "backend/io/__init__.py", "backend/features/__init__.py",
                "backend/inference/__init__.py", "backend/blender/__init__.py")
FORBIDDEN = ("torch", "torch_geometric", "onnx", "onnxscript", "tensorboard")


class BuildError(RuntimeError):
    """The extension cannot be built; the message says why."""


@dataclass
class BuildResult:
    platform: str
    zip_path: Path
    size_bytes: int
    wheels: list
    modules: list
    has_model: bool


# ----------------------------------------------------------------------------- vendoring
def _backend_imports(path: Path, text: str | None = None) -> set[str]:
    """Modules named ``backend...`` that a file (or its ``text``) imports (anywhere in it, lazy imports
    included)."""
    tree = ast.parse(path.read_text(encoding="utf-8") if text is None else text, filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "backend")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] == "backend":
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def _third_party_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def _module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None  # a name imported from a module (a function), or an optional module that is absent


def backend_closure(start: list[Path]) -> list[Path]:
    """Repository-relative .py files of ``backend`` reachable by imports from ``start`` (plus the
    packages' ``__init__.py`` files and :data:`VENDOR_ROOTS`), sorted."""
    todo = list(start) + [ROOT / p for p in VENDOR_ROOTS if (ROOT / p).is_file()]
    seen: set[Path] = set()
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        for name in _backend_imports(f):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # parent packages too
                mf = _module_file(".".join(parts[:i]))
                if mf is not None and mf not in seen:
                    todo.append(mf)
    return sorted(p.relative_to(ROOT) for p in seen if ROOT / "backend" in p.parents)


def check_runtime_imports(files: list[Path]) -> None:
    """Refuse to vendor a module that imports torch or another training-only package."""
    for rel in files:
        bad = _third_party_imports(ROOT / rel) & set(FORBIDDEN)
        if bad:
            raise BuildError(f"{rel}: imports {sorted(bad)}, which Blender does not have; the add-on must not need it")


_FROM_HEAD = re.compile(r"from\s+(backend(?:\.\w+)*)\b")


def _relative_name(module: str, dots: int, base: str) -> str:
    """``backend[.rest]`` as a relative module name: ``dots`` dots, then ``base`` (if any), then rest."""
    return "." * dots + ".".join(([base] if base else []) + module.split(".")[1:])


def vendored_source(path: Path) -> str:
    """The text of ``path`` (an ``addon/*.py`` or ``backend/**.py`` file) as it goes into the zip: every
    import of ``backend`` made relative to the add-on's runtime subpackage (:data:`RUNTIME_PACKAGE`),
    everything else unchanged. BuildError for an import it cannot rewrite (``import backend.x`` without
    ``as``, or one split over lines) or when a ``backend`` import is left."""
    text = path.read_text(encoding="utf-8")
    rel = path.relative_to(ROOT)
    if rel.parts[0] == "backend":  # runtime/<...>/x.py: from its package up to runtime/
        dots, base = len(rel.parts) - 1, ""
    else:  # an add-on module at the package root
        dots, base = 1, RUNTIME_PACKAGE
    lines = text.splitlines(keepends=True)
    edits = []  # (line index, start char, end char, replacement)
    for node in ast.walk(ast.parse(text, filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.split(".")[0] == "backend":
            line = lines[node.lineno - 1]
            start = len(line.encode("utf-8")[:node.col_offset].decode("utf-8"))
            m = _FROM_HEAD.match(line, start)
            if m is None or m.group(1) != node.module:
                raise BuildError(f"{rel}:{node.lineno}: cannot rewrite this import of {node.module}")
            edits.append((node.lineno - 1, m.start(1), m.end(1), _relative_name(node.module, dots, base)))
        elif isinstance(node, ast.Import) and any(a.name.split(".")[0] == "backend" for a in node.names):
            alias = node.names[0]
            if len(node.names) != 1 or not alias.asname or "." not in alias.name or node.end_lineno != node.lineno:
                raise BuildError(f"{rel}:{node.lineno}: write this import of backend as 'import backend.x.y as z' "
                                 f"or 'from backend.x import y', so that it can be vendored")
            line = lines[node.lineno - 1]
            start = len(line.encode("utf-8")[:node.col_offset].decode("utf-8"))
            end = len(line.encode("utf-8")[:node.end_col_offset].decode("utf-8"))
            parent, _, last = alias.name.rpartition(".")
            edits.append((node.lineno - 1, start, end,
                          f"from {_relative_name(parent, dots, base)} import {last} as {alias.asname}"))
    for i, start, end, new in sorted(edits, reverse=True):
        lines[i] = lines[i][:start] + new + lines[i][end:]
    out = "".join(lines)
    left = _backend_imports(path, out)
    if left:
        raise BuildError(f"{rel}: imports of {sorted(left)} are left after vendoring")
    return out


def _zip_text(zf: zipfile.ZipFile, source: Path, arcname: str, text: str) -> None:
    """Write ``text`` at ``arcname`` with the time stamp and mode of ``source``."""
    info = zipfile.ZipInfo.from_file(source, arcname)
    zf.writestr(info, text.encode("utf-8"), compress_type=zipfile.ZIP_DEFLATED)


# ----------------------------------------------------------------------------- wheels
def _wheel_ok(name: str, dist: str, version: str, py: str, platform: str) -> bool:
    parts = name[:-4].split("-")
    if len(parts) < 5 or parts[0].lower().replace("_", "-") != dist.lower() or parts[1] != version:
        return False
    tag = "cp" + py.replace(".", "")
    if parts[-3] != tag:
        return False
    return any(p in parts[-1].split(".") for p in PIP_PLATFORMS[platform])


def fetch_wheels(platform: str, cache: Path, quiet: bool = True) -> list[Path]:
    """The wheels of :data:`WHEEL_SPECS` for ``platform`` from ``cache``, downloading what is missing."""
    out = []
    cache.mkdir(parents=True, exist_ok=True)
    for py, specs in WHEEL_SPECS.items():
        for spec in specs:
            dist, version = spec.split("==")
            have = [p for p in cache.glob("*.whl") if _wheel_ok(p.name, dist, version, py, platform)]
            if not have:
                cmd = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--no-deps",
                       "--python-version", py, "--implementation", "cp", "-d", str(cache), spec]
                for tag in PIP_PLATFORMS[platform]:
                    cmd += ["--platform", tag]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                have = [p for p in cache.glob("*.whl") if _wheel_ok(p.name, dist, version, py, platform)]
                if proc.returncode != 0 or not have:
                    raise BuildError(f"pip could not download {spec} for CPython {py} on {platform}:\n"
                                     f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
            out.append(sorted(have)[-1])
    return out


# ----------------------------------------------------------------------------- manifest + zip
def manifest_text(platform: str, wheel_names: list[str]) -> str:
    """The repo manifest with this build's ``platforms`` and ``wheels`` (inserted before the first table)."""
    text = MANIFEST.read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if not re.match(r"\s*(platforms|wheels)\s*=", ln)]
    extra = [f'platforms = ["{platform}"]']
    if wheel_names:
        extra.append("wheels = [")
        extra += [f'  "./wheels/{n}",' for n in wheel_names]
        extra.append("]")
    first_table = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("[") and "=" not in ln), len(lines))
    lines[first_table:first_table] = extra + [""]
    out = "\n".join(lines) + "\n"
    data = tomllib.loads(out)
    if data.get("platforms") != [platform]:
        raise BuildError(f"{MANIFEST}: could not set platforms (got {data.get('platforms')})")
    return out


def version() -> str:
    return tomllib.loads(MANIFEST.read_text(encoding="utf-8"))["version"]


def build_platform(platform: str, out_dir: Path, wheels: bool = True, model: bool = True,
                   cache: Path | None = None) -> BuildResult:
    """Write ``out_dir/autoskin-<version>-<platform>.zip`` atomically and return what went in."""
    if platform not in PLATFORMS:
        raise BuildError(f"unknown platform {platform!r}; choose from {', '.join(PLATFORMS)}")
    addon_files = sorted(p for p in ADDON_DIR.glob("*.py"))
    if not (ADDON_DIR / "__init__.py").is_file():
        raise BuildError(f"{ADDON_DIR}/__init__.py is missing")
    modules = backend_closure(addon_files)
    check_runtime_imports(modules)
    wheel_files = fetch_wheels(platform, cache or out_dir / "wheels-cache") if wheels else []
    has_model = model and MODEL.is_file()
    zip_path = out_dir / f"autoskin-{version()}-{platform}.zip"
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(zip_path, suffix=".zip") as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("blender_manifest.toml", manifest_text(platform, [w.name for w in wheel_files]))
            for f in addon_files:
                _zip_text(zf, f, f.name, vendored_source(f))
            for rel in modules:
                _zip_text(zf, ROOT / rel, f"{RUNTIME_PACKAGE}/{rel.relative_to('backend').as_posix()}",
                          vendored_source(ROOT / rel))
            if has_model:
                zf.write(MODEL, f"models/{MODEL.name}")
            for w in wheel_files:  # wheels are zips already: store them
                zf.write(w, f"wheels/{w.name}", compress_type=zipfile.ZIP_STORED)
    return BuildResult(platform, zip_path, zip_path.stat().st_size, [w.name for w in wheel_files],
                       [m.as_posix() for m in modules], has_model)


def blender_validator() -> Path:
    """Blender's extension validator script inside the installed bpy package."""
    import importlib.util

    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        raise BuildError("bpy is not installed: cannot find Blender's extension validator")
    base = Path(list(spec.submodule_search_locations)[0])
    found = sorted(base.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not found:
        raise BuildError(f"no */scripts/addons_core/bl_pkg/cli/blender_ext.py under {base}")
    return found[-1]


def validate(zip_path: Path) -> str:
    """Run Blender's ``blender_ext.py validate`` on a zip; raises BuildError with its output on failure."""
    proc = subprocess.run([sys.executable, str(blender_validator()), "validate", str(zip_path)],
                          capture_output=True, text=True)
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0 or "error" in output.lower():
        raise BuildError(f"{zip_path}: Blender's validator refused it:\n{output}")
    return output


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Build the Auto Skin Blender extension zips into dist/.")
    ap.add_argument("--platform", action="append", choices=PLATFORMS,
                    help="build only this platform (repeatable; default: all)")
    ap.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default: dist/)")
    ap.add_argument("--no-wheels", action="store_true", help="leave out scipy/onnxruntime wheels (fast, offline)")
    ap.add_argument("--no-model", action="store_true", help="leave out models/autoskin.onnx")
    ap.add_argument("--cache", type=Path, default=None, help="wheel cache (default: <out>/wheels-cache)")
    ap.add_argument("--validate", action="store_true", help="run Blender's extension validator on each zip")
    args = ap.parse_args(argv)
    try:
        for plat in args.platform or PLATFORMS:
            res = build_platform(plat, args.out, wheels=not args.no_wheels, model=not args.no_model,
                                 cache=args.cache)
            print(f"{res.zip_path}  {res.size_bytes / 2**20:.1f} MiB  {len(res.modules)} backend modules, "
                  f"model: {'yes' if res.has_model else 'no'}, wheels: {', '.join(res.wheels) or 'none'}")
            if args.validate:
                validate(res.zip_path)
                print("  validated by Blender's extension validator")
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

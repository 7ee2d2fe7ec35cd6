"""Make the project's ``backend`` package importable inside Blender, without a second copy of it.

Two layouts are supported:

* the installed extension (built by ``build_addon.py``): ``<extension>/vendor/backend/`` holds the
  runtime modules copied from the repository at build time;
* a repository checkout (development): ``addon/`` sits next to ``backend/``.

The chosen folder is put on ``sys.path``; if a different ``backend`` package is already imported
(another add-on's module of the same name), :func:`ensure_backend` raises with both paths.
:func:`release_backend` takes the folder and its modules away again and :func:`forget_modules` drops
the add-on's own modules that bound them, so that the next enable loads both afresh.
This module imports nothing but the standard library.
"""
from __future__ import annotations

import importlib
import os
import sys
from typing import Iterable

HERE = os.path.dirname(os.path.abspath(__file__))
VENDOR_DIR = os.path.join(HERE, "vendor")
MODEL_NAME = "autoskin.onnx"

_added_path: list[str] = []


class BackendMissing(ImportError):
    """The runtime package cannot be imported (broken install or a name clash)."""


def runtime_root() -> str:
    """The folder that contains the ``backend`` package this add-on runs."""
    if os.path.isdir(os.path.join(VENDOR_DIR, "backend")):
        return VENDOR_DIR
    return os.path.dirname(HERE)


def default_model_path() -> str:
    """The bundled model: ``<extension>/models/autoskin.onnx``, or ``<repo>/models/autoskin.onnx``."""
    bundled = os.path.join(HERE, "models", MODEL_NAME)
    if os.path.isfile(bundled) or os.path.isdir(os.path.join(VENDOR_DIR, "backend")):
        return bundled
    return os.path.join(os.path.dirname(HERE), "models", MODEL_NAME)


def ensure_backend() -> str:
    """Put :func:`runtime_root` on ``sys.path`` and import ``backend``; returns its folder.

    Raises BackendMissing when ``backend`` cannot be imported or another package of that name
    (one without ``backend.rig.RigError``) shadows it.
    """
    root = runtime_root()
    if root not in sys.path:
        sys.path.insert(0, root)
        _added_path.append(root)
    try:
        rig_mod = importlib.import_module("backend.rig")
    except ImportError as exc:
        raise BackendMissing(f"Auto Skin: cannot import its runtime from {root} ({exc}); reinstall the extension") from None
    if not hasattr(rig_mod, "RigError"):
        other = getattr(sys.modules.get("backend"), "__file__", "?")
        raise BackendMissing(f"Auto Skin: another module named 'backend' ({other}) hides the runtime in {root}; "
                             f"disable the add-on that provides it")
    return os.path.dirname(os.path.dirname(os.path.abspath(rig_mod.__file__)))


def release_backend() -> None:
    """Undo :func:`ensure_backend`: drop our ``sys.path`` entry and the ``backend`` modules loaded from it."""
    for root in _added_path:
        while root in sys.path:
            sys.path.remove(root)
        prefix = os.path.join(root, "backend")
        for name in [n for n in sys.modules if n == "backend" or n.startswith("backend.")]:
            path = getattr(sys.modules[name], "__file__", None) or ""
            if os.path.abspath(path).startswith(prefix):
                del sys.modules[name]
    _added_path.clear()


def forget_modules(package: str, names: Iterable[str]) -> None:
    """Drop the submodules ``package.<name>`` from ``sys.modules`` and from the package, so that the
    next ``from . import <name>`` runs them again (against the runtime loaded at that time)."""
    parent = sys.modules.get(package)
    for name in names:
        sys.modules.pop(f"{package}.{name}", None)
        if parent is not None and name in vars(parent):
            delattr(parent, name)

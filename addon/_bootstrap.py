"""Where the add-on's runtime (the project's ``backend`` package) comes from, without a second copy
of it in the repository.

Two layouts are supported:

* the installed extension (built by ``build_addon.py``): the runtime modules are vendored as the
  add-on's own subpackage ``<add-on package>.runtime`` (``runtime/`` beside this file), with their
  ``backend`` imports made relative, and the add-on's modules import it as ``.runtime``. Nothing
  goes on ``sys.path`` and nothing is imported under a top-level name, so another add-on's module
  named ``backend`` (or anything else) can neither shadow it nor be shadowed by it;
* a repository checkout (development, ``python -m backend bench-addon``): ``addon/`` sits next to
  ``backend/``, which is imported as ``backend`` (the repository root is put on ``sys.path``); if a
  different ``backend`` package is already imported, :func:`ensure_runtime` raises with both paths.

:func:`release_runtime` takes the runtime's modules (and a ``sys.path`` entry it added) away again
and :func:`forget_modules` drops the add-on's own modules that bound them, so that the next enable
loads both afresh. This module imports nothing but the standard library.
"""
from __future__ import annotations

import importlib
import os
import sys
from typing import Iterable

HERE = os.path.dirname(os.path.abspath(__file__))
#: The vendored runtime's subpackage name (build_addon.RUNTIME_PACKAGE).
RUNTIME = "runtime"
RUNTIME_DIR = os.path.join(HERE, RUNTIME)
MODEL_NAME = "autoskin.onnx"

_added_path: list[str] = []


class BackendMissing(ImportError):
    """The runtime package cannot be imported (broken install or, in a checkout, a name clash)."""


def vendored() -> bool:
    """True in the installed extension (the runtime is the subpackage ``runtime``)."""
    return os.path.isfile(os.path.join(RUNTIME_DIR, "__init__.py"))


def runtime_package() -> str:
    """The runtime's package name: ``<add-on package>.runtime`` when vendored, else ``backend``."""
    return f"{__package__}.{RUNTIME}" if vendored() else "backend"


def runtime_root() -> str:
    """The folder that contains the runtime package this add-on runs."""
    return HERE if vendored() else os.path.dirname(HERE)


def default_model_path() -> str:
    """The bundled model: ``<extension>/models/autoskin.onnx``, or ``<repo>/models/autoskin.onnx``."""
    bundled = os.path.join(HERE, "models", MODEL_NAME)
    if os.path.isfile(bundled) or vendored():
        return bundled
    return os.path.join(os.path.dirname(HERE), "models", MODEL_NAME)


def ensure_runtime() -> str:
    """Import the runtime (:func:`runtime_package`; in a checkout with the repository root put on
    ``sys.path``); returns the folder of the runtime package.

    Raises BackendMissing when it cannot be imported or, in a checkout, another package named
    ``backend`` (one without ``backend.rig.RigError``) shadows it.
    """
    name, root = runtime_package(), runtime_root()
    if not vendored() and root not in sys.path:
        sys.path.insert(0, root)
        _added_path.append(root)
    try:
        rig_mod = importlib.import_module(f"{name}.rig")
    except ImportError as exc:
        raise BackendMissing(f"Auto Skin: cannot import its runtime from {root} ({exc}); "
                             "reinstall the extension") from None
    if not hasattr(rig_mod, "RigError"):
        other = getattr(sys.modules.get(name), "__file__", "?")
        raise BackendMissing(f"Auto Skin: another module named {name!r} ({other}) hides the runtime in {root}; "
                             f"disable the add-on that provides it")
    return os.path.dirname(os.path.dirname(os.path.abspath(rig_mod.__file__)))


def release_runtime() -> None:
    """Undo :func:`ensure_runtime`: drop the vendored runtime's modules, or in a checkout our
    ``sys.path`` entry and the ``backend`` modules loaded from it."""
    if vendored():
        name = runtime_package()
        for mod in [n for n in sys.modules if n == name or n.startswith(name + ".")]:
            del sys.modules[mod]
        parent = sys.modules.get(__package__)
        if parent is not None and RUNTIME in vars(parent):
            delattr(parent, RUNTIME)
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

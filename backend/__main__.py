"""``python -m backend <command>``: every command line of the project.

Commands are discovered from the modules of ``backend/cli``: each defines ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``. A command's heavy imports happen inside
``run`` so that ``--help`` stays fast and torch-free.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import warnings

import backend.cli as cli_pkg
from backend.rig import RigError


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(prog="python -m backend",
                                     description="Auto Skin: learned skinning weights for any rig.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands = {}
    for info in sorted(pkgutil.iter_modules(cli_pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"backend.cli.{info.name}")
        if not hasattr(mod, "NAME"):
            continue
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "__doc__", None) or mod.HELP,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        commands[mod.NAME] = mod
    return parser, commands


def one_line_warning(message, category, filename, lineno, line=None) -> str:
    """Warnings on the command line read like errors: ``warning: <message>``."""
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    parser, commands = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 0
    try:
        return int(commands[args.command].run(args) or 0)
    except RigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the file system refused a read or write that no check foresaw
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    warnings.formatwarning = one_line_warning
    sys.exit(main())

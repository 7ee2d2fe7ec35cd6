#!/usr/bin/env bash
# Lint the tree with ruff, then run the whole test suite in the project's environment (creates .venv/ on
# first use).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/env.sh"
cd "$ROOT"
export BLENDER_USER_RESOURCES="${BLENDER_USER_RESOURCES:-$(mktemp -d)}"
ruff check .  # lint first (pyproject.toml [tool.ruff]); a finding fails the test command
exec python -m pytest -q tests "$@"

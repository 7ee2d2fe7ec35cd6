#!/usr/bin/env bash
# Auto Skin the built-in sample character (or the files given) and write a .blend and pictures to out/demo/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/env.sh"
cd "$ROOT"
exec python -m backend demo "$@"

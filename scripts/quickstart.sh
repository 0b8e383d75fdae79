#!/usr/bin/env bash
# Set up, write a demo catalog, and run the main job on the embedded default:
# a folder of images -> in-process engines -> Parquet tables under ./warehouse -> a run report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false
config=$(.venv/bin/python -m imgrec.samples samples)
.venv/bin/imgrec run samples/catalog --out warehouse --config "$config"

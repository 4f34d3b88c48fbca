#!/usr/bin/env bash
# Train on GPUS processes of this node (torchrun); several nodes: run it on each with NNODES, NODE_RANK, MASTER_ADDR
# and PORT set (defaults 1, 0, 127.0.0.1, 29500). ARGS go to `ocrforge train` (--work-dir, --resume, --amp, -o ...).
# Usage: tools/dist_train.sh CONFIG GPUS [ARGS...]
set -euo pipefail

if [ "$#" -lt 2 ]; then
    echo "usage: $0 CONFIG GPUS [ARGS...]" >&2
    exit 2
fi
CONFIG=$1
GPUS=$2
shift 2
exec "$(dirname "${BASH_SOURCE[0]}")/dist_run.sh" "$GPUS" train "$CONFIG" "$@"

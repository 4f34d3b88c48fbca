#!/usr/bin/env bash
# Evaluate CKPT on GPUS processes of this node (torchrun); NNODES, NODE_RANK, MASTER_ADDR and PORT as for
# dist_train.sh. ARGS go to `ocrforge test` (--save-preds, --show-dir DIR, -o ...).
# Usage: tools/dist_test.sh CONFIG CKPT GPUS [ARGS...]
set -euo pipefail

if [ "$#" -lt 3 ]; then
    echo "usage: $0 CONFIG CKPT GPUS [ARGS...]" >&2
    exit 2
fi
CONFIG=$1
CKPT=$2
GPUS=$3
shift 3
exec "$(dirname "${BASH_SOURCE[0]}")/dist_run.sh" "$GPUS" test "$CONFIG" "$CKPT" "$@"

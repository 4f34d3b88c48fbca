#!/usr/bin/env bash
# Run `ocrforge COMMAND ARGS --launcher pytorch` as GPUS processes on this node under torchrun; the common part of
# dist_train.sh and dist_test.sh. Usage: tools/dist_run.sh GPUS COMMAND [ARGS...]
#
# Environment (MMOCR's names and defaults): NNODES=1, NODE_RANK=0, MASTER_ADDR=127.0.0.1, PORT=29500;
# PYTHON=python (the interpreter that has ocrforge installed). Without a GPU the processes train on the CPU (gloo).
set -euo pipefail

if [ "$#" -lt 2 ]; then
    echo "usage: $0 GPUS COMMAND [ARGS...]" >&2
    exit 2
fi
GPUS=$1
COMMAND=$2
shift 2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
PORT=${PORT:-29500}
PYTHON=${PYTHON:-python}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if ! command -v "$PYTHON" > /dev/null; then
    echo "tools/dist_$COMMAND.sh: error: no $PYTHON here: set PYTHON to the interpreter that has ocrforge" >&2
    exit 2
fi
case $PORT in
    '' | *[!0-9]*) echo "tools/dist_$COMMAND.sh: error: PORT must be a port number, not '$PORT'" >&2; exit 2 ;;
esac
# torchrun on node 0 listens on PORT for the others. Taken, it fails with a long EADDRINUSE traceback; say it in
# one line before anything starts. SO_REUSEADDR as torch's TCPStore binds: a port in TIME_WAIT is free for it too.
if [ "$NODE_RANK" = 0 ] && ! reason=$("$PYTHON" - "$PORT" 2>&1 <<'PROBE'
import socket
import sys

with socket.socket() as probe:
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind(("", int(sys.argv[1])))
    except OSError as exc:
        sys.exit(exc.strerror)
PROBE
); then
    echo "tools/dist_$COMMAND.sh: error: PORT $PORT cannot be listened on here ($reason; another training run?)." \
         "Choose a free port, the same on every node, e.g. PORT=$((PORT + 1)) tools/dist_$COMMAND.sh ..." >&2
    exit 1
fi

# When one process fails torchrun stops the others (SIGTERM, SIGKILL after a grace period) and exits non-zero, so
# none is left waiting for it. --max-restarts=0 is its default, pinned: a restart would begin a new run folder.
PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}" exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node-rank="$NODE_RANK" \
    --master-addr="$MASTER_ADDR" \
    --master-port="$PORT" \
    --nproc-per-node="$GPUS" \
    --max-restarts=0 \
    -m ocrforge.cli "$COMMAND" "$@" --launcher pytorch

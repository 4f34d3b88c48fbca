#!/usr/bin/env bash
# Train in the ocrforge image (docker/Dockerfile) as yourself: the current folder is mounted at its own path and is
# the working directory, so configs and run folders (work_dirs/...) are where they are on the host, owned by you.
# Usage: docker/train.sh CONFIG [ARGS...]        ARGS go to `ocrforge train` (--devices 2, --resume, -o key=value)
#
# Environment: IMAGE (ocrforge), GPUS (all; e.g. '"device=0,1"'; empty: CPU only), SHM_SIZE (16g: DataLoader
# workers hand batches over through /dev/shm, which Docker limits to 64 MB otherwise), DATA_DIR (./data): the data
# folder, mounted read-only at its own path so that the paths in configs stay valid.
set -euo pipefail

if [ "$#" -lt 1 ]; then
    echo "usage: $0 CONFIG [ARGS...]" >&2
    exit 2
fi
IMAGE=${IMAGE:-ocrforge}
GPUS=${GPUS-all}
SHM_SIZE=${SHM_SIZE:-16g}

options=(--rm --shm-size="$SHM_SIZE" -e USER_ID="$(id -u)" -e GROUP_ID="$(id -g)" -v "$PWD:$PWD" -w "$PWD")
if [ -n "$GPUS" ]; then
    options+=(--gpus "$GPUS")
fi
if [ -n "${DATA_DIR:-}" ] || [ -d data ]; then
    DATA_DIR=$(cd "${DATA_DIR:-data}" && pwd -P) || { echo "$0: DATA_DIR is not a folder" >&2; exit 2; }
    options+=(-v "$DATA_DIR:$DATA_DIR:ro")
fi
if [ -t 0 ] && [ -t 1 ]; then
    options+=(-it)  # from a terminal: progress bar, and Ctrl-C reaches the training (it saves last.ckpt)
fi
exec docker run "${options[@]}" "$IMAGE" ocrforge train "$@"

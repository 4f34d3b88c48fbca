#!/usr/bin/env bash
# Evaluate CKPT on a SLURM cluster: GPUS processes (one per GPU), GPUS_PER_NODE on each node, through srun.
# Usage: tools/slurm_test.sh PARTITION JOB_NAME CONFIG CKPT WORK_DIR [ARGS...]   ARGS go to `ocrforge test`
#
# Environment (MMOCR's names and defaults): GPUS=8, GPUS_PER_NODE=8, CPUS_PER_TASK=5, SRUN_ARGS (more srun
# options); PYTHON=python.
set -euo pipefail

if [ "$#" -lt 5 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG CKPT WORK_DIR [ARGS...]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CKPT=$4
WORK_DIR=$5
shift 5
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-}
PYTHON=${PYTHON:-python}
PER_NODE=$((GPUS < GPUS_PER_NODE ? GPUS : GPUS_PER_NODE))  # a job smaller than a node: GPUS on one node
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# --kill-on-bad-exit: one task failing ends the others, rather than leaving them waiting for it in a collective.
# shellcheck disable=SC2086  # SRUN_ARGS holds several options
PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}" exec srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    --gres=gpu:"$PER_NODE" \
    --ntasks="$GPUS" \
    --ntasks-per-node="$PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    $SRUN_ARGS \
    "$PYTHON" -u -m ocrforge.cli test "$CONFIG" "$CKPT" --work-dir "$WORK_DIR" --launcher slurm "$@"

#!/usr/bin/env bash
# Shared by slurm_train.sh and slurm_test.sh: one `ocrforge` task per GPU through srun.
# Usage: tools/slurm_run.sh PARTITION JOB_NAME "SRUN_OPTIONS" OCRFORGE_ARGS...
# Environment (MMOCR's names and defaults): GPUS=8, GPUS_PER_NODE=8, CPUS_PER_TASK=5, SRUN_ARGS; PYTHON=python.
set -euo pipefail

PARTITION=$1
JOB_NAME=$2
EXTRA_SRUN=$3
shift 3
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-}
PYTHON=${PYTHON:-python}
PER_NODE=$((GPUS < GPUS_PER_NODE ? GPUS : GPUS_PER_NODE))  # a job smaller than a node: GPUS on one node
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# --kill-on-bad-exit: one task failing ends the others, rather than leaving them waiting for it in a collective.
# shellcheck disable=SC2086  # EXTRA_SRUN and SRUN_ARGS hold several options
PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}" exec srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    --gres=gpu:"$PER_NODE" \
    --ntasks="$GPUS" \
    --ntasks-per-node="$PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    $EXTRA_SRUN \
    $SRUN_ARGS \
    "$PYTHON" -u -m ocrforge.cli "$@"

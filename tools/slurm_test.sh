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
exec "$(dirname "${BASH_SOURCE[0]}")/slurm_run.sh" "$1" "$2" "" test "$3" "$4" --work-dir "$5" --launcher slurm "${@:6}"

#!/usr/bin/env bash
# Train on a SLURM cluster: GPUS processes (one per GPU), GPUS_PER_NODE on each node, through srun.
# Usage: tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [ARGS...]   ARGS go to `ocrforge train`
#
# Environment (MMOCR's names and defaults): GPUS=8, GPUS_PER_NODE=8, CPUS_PER_TASK=5, SRUN_ARGS (more srun options,
# e.g. "--time=24:00:00 --qos=high"); PYTHON=python.
#
# Pre-emption: SLURM sends SIGUSR1 90 s before the job's time limit (--signal below); SIGUSR1 or SIGTERM stop the
# training after the current batch, last.ckpt is saved, and the job is requeued (scontrol requeue), whereupon the
# same command resumes that run. SLURM requeues batch jobs only: for that, submit this script with sbatch, e.g.
#   sbatch -p PARTITION --nodes=2 --gres=gpu:8 --ntasks-per-node=8 --requeue --wrap \
#       "GPUS=16 tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR"
# Started from a login shell instead, the run stops and saves the same way and is continued with --resume.
set -euo pipefail

if [ "$#" -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG WORK_DIR [ARGS...]" >&2
    exit 2
fi
exec "$(dirname "${BASH_SOURCE[0]}")/slurm_run.sh" "$1" "$2" --signal=USR1@90 train "$3" --work-dir "$4" --launcher slurm "${@:5}"

#!/usr/bin/env bash
# The body shared by slurm/sft.sbatch and slurm/grpo.sbatch: srun-native ranks for `mtr STAGE`.
#
#   bash slurm/stage.sh STAGE CONFIG.yaml [key=value ...]     (called by the sbatch scripts)
#
# Environment knobs:
#   MTR_PYTHON               the python with mtr-hpc installed (default: $SLURM_SUBMIT_DIR/.venv/bin/python, else python)
#   MTR_CONTAINER_IMAGE      run inside this enroot/pyxis image (e.g. nvcr.io#nvidia/pytorch:25.01-py3)
#   MTR_CONTAINER_MOUNTS     pyxis --container-mounts value (e.g. /lustre:/lustre,$HOME:$HOME)
#   MTR_DEVICE               overrides the config's `device` (cpu on CPU-only test clusters)
#
# Stopping in time: every task gets SIGUSR1 before the time limit (`--signal` of the sbatch scripts) and
# SIGTERM on preemption, and each run also stops on its own when its next step and a checkpoint would
# not fit before the time limit (`train.time_limit_margin_s`). The ranks agree, save a checkpoint, leave
# a marker file ($MTR_REQUEUE_MARKER) and exit 0, and this script requeues the job, which resumes from
# that checkpoint (OUT/checkpoints/latest). The ranks exit 0 rather than 42 because srun
# --kill-on-bad-exit=1 (which stops a job whose rank crashed instead of leaving the others hanging in a
# collective) kills the other ranks as soon as the first one exits non-zero, and srun then reports their
# SIGKILL, not 42. This script survives the SIGTERM Slurm sends the whole job (a trap, and srun in the
# background: bash runs a trap only between commands) so that it is still there to requeue; the ranks
# ignore SIGUSR1 until Python has installed its handler, instead of dying of it.
set -euo pipefail

STAGE=${1:?usage: stage.sh STAGE CONFIG.yaml [key=value ...]}
CONFIG=${2:?usage: stage.sh STAGE CONFIG.yaml [key=value ...]}
shift 2
cd "${SLURM_SUBMIT_DIR:-.}"

PY=${MTR_PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x "${SLURM_SUBMIT_DIR:-.}/.venv/bin/python" ]; then PY="${SLURM_SUBMIT_DIR:-.}/.venv/bin/python"; else PY=python; fi
fi

# torch.distributed rendezvous from Slurm's view of the job; each srun task maps its ids to RANK etc.
MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export MASTER_ADDR
export MASTER_PORT=${MASTER_PORT:-$((20000 + SLURM_JOB_ID % 20000))}
export CUDA_DEVICE_MAX_CONNECTIONS=1      # Megatron: keeps TP communication ordered with compute
export TORCH_NCCL_ASYNC_ERROR_HANDLING=1
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

container=()
if [ -n "${MTR_CONTAINER_IMAGE:-}" ]; then
  container=(--container-image="$MTR_CONTAINER_IMAGE" --container-workdir="$PWD")
  [ -n "${MTR_CONTAINER_MOUNTS:-}" ] && container+=(--container-mounts="$MTR_CONTAINER_MOUNTS")
fi
extra=()
[ -n "${MTR_DEVICE:-}" ] && extra+=("device=$MTR_DEVICE")

# On the shared filesystem of the submission directory, so every node and container sees it.
MTR_REQUEUE_MARKER="$PWD/.mtr-requeue-${SLURM_JOB_ID}"
export MTR_REQUEUE_MARKER
rm -f "$MTR_REQUEUE_MARKER"

# srun does not inherit --cpus-per-task from sbatch (Slurm >= 22.05): each rank would get one CPU.
[ -n "${SLURM_CPUS_PER_TASK:-}" ] && export SRUN_CPUS_PER_TASK=$SLURM_CPUS_PER_TASK

terminated=0
trap 'terminated=1' TERM
srun --kill-on-bad-exit=1 "${container[@]}" bash -c '
  export RANK=$SLURM_PROCID WORLD_SIZE=$SLURM_NTASKS LOCAL_RANK=$SLURM_LOCALID
  trap "" USR1
  exec "$0" -m mtr_hpc "$@"
' "$PY" "$STAGE" --config "$CONFIG" "$@" "${extra[@]}" &
srun_pid=$!
rc=0
while :; do
  wait "$srun_pid" && rc=0 || rc=$?
  # A trapped signal interrupts `wait` (status > 128) while srun still runs: wait again.
  kill -0 "$srun_pid" 2>/dev/null || break
done
if [ -e "$MTR_REQUEUE_MARKER" ] || [ "$rc" = 42 ]; then
  rm -f "$MTR_REQUEUE_MARKER"
  echo "mtr $STAGE: checkpoint saved after a time-limit/preemption signal; requeueing job $SLURM_JOB_ID" >&2
  scontrol requeue "$SLURM_JOB_ID"
  exit 0
fi
if [ "$terminated" = 1 ]; then
  echo "mtr $STAGE: job $SLURM_JOB_ID was terminated before the ranks saved; a rerun resumes from the last checkpoint" >&2
fi
exit "$rc"

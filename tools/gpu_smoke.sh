#!/usr/bin/env bash
# The GPU check of the training path (tools/gpu_smoke.py), for a machine with one GPU and no package
# registry. Two steps, from the repository root:
#
#   bash tools/gpu_smoke.sh --prepare      where pip reaches PyPI: fills .gpu_smoke/ (git-ignored) with the
#                                          Python 3.12 wheels the import path needs beyond torch and
#                                          transformers (megatron-core 0.19.x, jsonschema and its needs) and
#                                          the tokenizer of the tiny GRPO run (a few MB in all)
#   bash tools/gpu_smoke.sh [ARGS...]      on the GPU machine: installs those wheels into a private folder
#                                          (nothing system-wide), then runs `python3 tools/gpu_smoke.py ARGS`,
#                                          which prints one JSON object and writes it to $OUT/gpu_smoke.json
#                                          when OUT is set
#
# MTR_PYTHON picks the interpreter (default python3); MTR_SMOKE_PY the Python version the wheels are for
# (default 3.12).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=.gpu_smoke
PY=${MTR_PYTHON:-python3}

if [ "${1:-}" = "--prepare" ]; then
  rm -rf "$DIR/wheels" && mkdir -p "$DIR/wheels" "$DIR/tokenizer"
  platforms=()
  for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
           manylinux2014_x86_64 manylinux1_x86_64 any; do
    platforms+=(--platform "$p")
  done
  # --no-deps: each wheel is named; the GPU image has numpy, packaging, attrs, pyyaml, typing-extensions.
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "${MTR_SMOKE_PY:-3.12}" \
    --implementation cp "${platforms[@]}" -d "$DIR/wheels" \
    "megatron-core>=0.19,<0.20" "jsonschema>=4.20" jsonschema-specifications referencing rpds-py
  # The tiny GRPO run renders with SmolLM2's tokenizer; its files (no weights) travel with the check.
  .venv/bin/python - "$DIR/tokenizer" <<'EOF'
import shutil, sys
from pathlib import Path
from mtr_hpc.models.registry import resolve_model
src, dst = Path(resolve_model("smollm2-135m")), Path(sys.argv[1])
for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
             "generation_config.json", "special_tokens_map.json"):
    if (src / name).is_file():
        shutil.copy(src / name, dst / name)
EOF
  du -sh "$DIR"
  echo "gpu_smoke.sh: prepared $DIR ($(ls "$DIR/wheels" | wc -l) wheels)" >&2
  exit 0
fi

if [ ! -d "$DIR/wheels" ]; then
  echo "gpu_smoke.sh: $DIR/wheels is missing; run 'bash tools/gpu_smoke.sh --prepare' where pip works" >&2
  exit 2
fi
SITE=$(mktemp -d)
"$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$DIR"/wheels/*.whl
export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 CUDA_DEVICE_MAX_CONNECTIONS=1
tok=()
[ -f "$DIR/tokenizer/tokenizer.json" ] && tok=(--tokenizer "$DIR/tokenizer")
exec "$PY" tools/gpu_smoke.py "${tok[@]}" "$@"

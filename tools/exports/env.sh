#!/usr/bin/env bash
# Create (or update) the exporters' development-only virtual environments,
# outside the repository and never in the app's .venv:
#   ~/.cache/guiapp/exports-env         torch, torchvision, Ultralytics, timm (requirements.txt)
#   ~/.cache/guiapp/exports-env-paddle  PaddlePaddle, paddle2onnx (requirements-paddle.txt)
# Python 3.11, x86_64. Then:
#   ~/.cache/guiapp/exports-env/bin/python tools/exports/make_exports.py all
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="${GUIAPP_EXPORTS_ENV_ROOT:-$HOME/.cache/guiapp}"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null || python=python3
"$python" - <<'PY'
import platform, sys
if sys.version_info[:2] != (3, 11) or platform.machine() != "x86_64":
    sys.exit(f"needs Python 3.11 on x86_64 (the pinned torch/torchvision wheels); this is {sys.version.split()[0]} on {platform.machine()}")
PY
if [ ! -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; then
    echo "DejaVu fonts missing (text images, Ultralytics' Arial stand-in): apt-get install fonts-dejavu-core" >&2
    exit 1
fi
make_env() {  # name requirements-file
    local env="$root/$1"
    [ -x "$env/bin/python" ] || "$python" -m venv "$env"
    "$env/bin/python" -m pip install --quiet --upgrade pip
    "$env/bin/python" -m pip install --quiet -r "$here/$2"
    echo "$env: $("$env/bin/python" -m pip freeze | wc -l) packages"
}
mkdir -p "$root"
make_env exports-env requirements.txt
make_env exports-env-paddle requirements-paddle.txt

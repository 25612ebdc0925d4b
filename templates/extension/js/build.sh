#!/bin/sh
# Builds {{name}}.wasm with componentize-js (`npm install @bytecodealliance/componentize-js@0.23.0
# @bytecodealliance/preview2-shim@0.25.0`, its bin on PATH). The world has no HTTP: fetch is left
# out, so the component imports none.
set -eu
cd "$(dirname "$0")"
rm -f {{name}}.wasm
componentize-js {{module}}.js --wit wit --world-name room-extension --disable http fetch-event \
  --out {{name}}.wasm </dev/null
test -s {{name}}.wasm

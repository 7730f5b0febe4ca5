#!/usr/bin/env bash
# Brings the tiny random-weight architecture fixtures (GGUF files with llama.cpp and float64
# goldens, 57 MB, see tests/fixtures/README.md) into .cache/fixtures/ from the project's shared
# reference data beside the checkout (../shared/fixtures, or $BURROW_SHARED/fixtures), and checks
# every file against tests/fixtures/SHA256SUMS.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
src="${BURROW_SHARED:-$root/../shared}/fixtures"
dest="$root/.cache/fixtures"
sums="$root/tests/fixtures/SHA256SUMS"

if [ -d "$dest" ] && (cd "$dest" && sha256sum --check --quiet --status "$sums" 2>/dev/null); then
  exit 0
fi
if [ ! -d "$src" ]; then
  echo "fetch_fixtures: $src is missing: the architecture fixtures come from the project's shared reference data" >&2
  exit 1
fi
mkdir -p "$dest"
cut -c67- "$sums" | while read -r name; do cp "$src/$name" "$dest/$name"; done
(cd "$dest" && sha256sum --check --quiet "$sums")
echo "fixtures ready: $dest"

#!/bin/bash
# Drops the compat chroots (tests/compat/lib.sh's cache) and build/compat.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=tests/compat/lib.sh
. tests/compat/lib.sh
for d in "$COMPAT_CACHE"/*/; do
	[ -d "$d" ] && remove_tree "${d%/}"
done
rm -rf --one-file-system "$COMPAT_CACHE" build/compat

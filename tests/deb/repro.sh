#!/bin/bash
# Two package builds that differ in what must not matter (hash seed, time zone,
# locale, umask, build path) must give byte-identical .debs (`make deb-repro`).
# On a difference, diffoscope (if installed) shows where.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=$(realpath -m "${1:-build/repro}")
rm -rf "$OUT"
export DEB_BUILD_OPTIONS="${DEB_BUILD_OPTIONS:-} nocheck"  # the tests ran in `make deb`
(umask 022; PYTHONHASHSEED=1 TZ=UTC LC_ALL=C.UTF-8 tests/deb/build.sh "$OUT/a") >"$OUT.a.log" 2>&1 ||
	{ tail -20 "$OUT.a.log" >&2; exit 1; }
(umask 002; PYTHONHASHSEED=7 TZ=Asia/Tokyo LC_ALL=C tests/deb/build.sh "$OUT/b/a/longer/path") >"$OUT.b.log" 2>&1 ||
	{ tail -20 "$OUT.b.log" >&2; exit 1; }
rc=0
for deb in "$OUT"/a/*.deb; do
	other="$OUT/b/a/longer/path/$(basename "$deb")"
	if cmp -s "$deb" "$other"; then
		echo "repro: $(basename "$deb") identical"
	else
		echo "repro: $(basename "$deb") differs" >&2
		command -v diffoscope >/dev/null && diffoscope "$deb" "$other" >&2 || true
		rc=1
	fi
done
exit $rc

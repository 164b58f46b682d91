#!/bin/bash
# Style gates: ruff for Python; the kernel's own checkpatch.pl (--strict) for
# the C sources.  checkpatch.pl comes from Debian's linux-source package,
# fetched once into build/checkpatch.
set -euo pipefail
shopt -s nullglob
cd "$(dirname "$0")/.."

py=(msrctl tests bench debian)
.venv/bin/ruff check "${py[@]}"
.venv/bin/ruff format --check "${py[@]}"

cp_dir=build/checkpatch
ioctl_doc=$cp_dir/userspace-api/ioctl/ioctl-number.rst  # tar strips linux-source-*/Documentation
if [ ! -x "$cp_dir/checkpatch.pl" ] || [ ! -e "$ioctl_doc" ]; then
	pkg=$(apt-cache depends linux-source 2>/dev/null | awk '/Depends: linux-source-/{print $2; exit}')
	[ -n "$pkg" ] || { echo "lint: no linux-source package known to apt (run apt-get update)" >&2; exit 1; }
	tmp=$(mktemp -d)
	(cd "$tmp" && apt-get download -qq "$pkg")
	mkdir -p "$cp_dir"
	dpkg-deb --fsys-tarfile "$tmp"/"$pkg"_*.deb | tar -xO --wildcards './usr/src/linux-source-*.tar.xz' |
		tar -xJ -C "$cp_dir" --strip-components=2 --wildcards \
			'*/scripts/checkpatch.pl' '*/scripts/spelling.txt' '*/scripts/const_structs.checkpatch' \
			'*/Documentation/userspace-api/ioctl/ioctl-number.rst'
	rm -rf "$tmp"
fi
# Our sources only: dkms/ also holds the build's generated *.mod.c.
csrc=(dkms/msrdrv_*.[ch] dkms/msrdrv.h tests/guest/c/*.c bench/*.c)
perl "$cp_dir/checkpatch.pl" --no-tree --strict --quiet -f "${csrc[@]}" ||
	{ echo "lint: checkpatch found style problems (above)" >&2; exit 1; }
# Our ioctl magic must be one the kernel's registry leaves free (0xB7 was nsfs's).
[ -e "$ioctl_doc" ] || { echo "lint: $ioctl_doc missing" >&2; exit 1; }
magic=$(sed -n 's/^#define MSRDRV_IOC_MAGIC[[:space:]]*\(0x[0-9A-Fa-f]*\).*/\1/p' dkms/msrdrv.h)
[ -n "$magic" ] || { echo "lint: no MSRDRV_IOC_MAGIC in dkms/msrdrv.h" >&2; exit 1; }
if grep -qi "^$magic[[:space:]]" "$ioctl_doc"; then
	echo "lint: ioctl magic $magic is taken in ioctl-number.rst:" >&2
	grep -i "^$magic[[:space:]]" "$ioctl_doc" >&2
	exit 1
fi
echo "lint: ruff and checkpatch clean; ioctl magic $magic is free"

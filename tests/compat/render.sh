#!/bin/bash
# Writes tests/compat/results.md from tests/compat/matrix.tsv (matrix.sh) and
# tests/compat/boot.tsv (boottest.sh).  Run by both; safe to run by hand.
set -euo pipefail
cd "$(dirname "$0")/../.."
TSV=tests/compat/matrix.tsv
BOOT=tests/compat/boot.tsv
OUTMD=tests/compat/results.md
touch "$BOOT"
[ -s "$TSV" ] || { echo "render.sh: no $TSV yet; run make compat" >&2; exit 1; }

# The kernel that `make test` boots (the Makefile's KVER default).
MAKE_TEST_KVER=$(ls -d /lib/modules/*/build 2>/dev/null | cut -d/ -f4 | sort -V | tail -1)

order() { # bullseye bookworm trixie sid, whatever order the rows came in
	awk -F'\t' 'BEGIN { o["bullseye"]=1; o["bookworm"]=2; o["trixie"]=3; o["forky"]=4; o["sid"]=5 }
		{ print (($1 in o) ? o[$1] : 9) "\t" $0 }' "$1" | sort -n | cut -f2-
}
ver() { case $1 in bullseye) echo "11 bullseye" ;; bookworm) echo "12 bookworm" ;; trixie) echo "13 trixie" ;; sid) echo "sid" ;; *) echo "$1" ;; esac; }
boot_of() { # "passed N/N in S s (date)" for a kernel, or "-"
	awk -F'\t' -v k="$1" '$2 == k { r = $3 " (" $4 " s, " $5 ")" } END { print r ? r : "-" }' "$BOOT"
}

{
	echo "# Kernel compatibility results"
	echo
	echo "Written by \`make compat\` (tests/compat/matrix.sh) and \`make compat-boot\`"
	echo "(tests/compat/boottest.sh); do not edit by hand. Each build runs in a"
	echo "debootstrap chroot of that Debian release, against its \`linux-headers-amd64\`,"
	echo "with the compiler the headers select, as \`make -C dkms KVER=... MSRDRV_WERROR=1\`;"
	echo "then \`dkms add\` / \`dkms build -k KVER\` / \`dkms remove\` with the tree's"
	echo "\`dkms/dkms.conf\` (\`#MODULE_VERSION#\` replaced by \`dkms/VERSION\`, as dh_dkms does)."
	echo
	echo "## Build matrix"
	echo
	echo "| Debian | kernel | headers package | compiler | kernel built with | -Werror build | warnings | build s | dkms | dkms build -k s | chroot setup (fresh) | date |"
	echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
	order "$TSV" | while IFS=$'\t' read -r rel kver hdr cc bw build warn tb dkms dkmsver td setup date; do
		echo "| $(ver "$rel") | \`$kver\` | $hdr | $cc | $bw | $build | $warn | $tb | $dkms ($dkmsver) | $td | ${setup} s | $date |"
	done
	echo
	echo "## Boot tests (in-guest suite, QEMU TCG, 2 vCPUs)"
	echo
	echo "| kernel | result | how |"
	echo "|---|---|---|"
	if [ -s "$BOOT" ]; then
		while IFS=$'\t' read -r rel kver res secs date how; do
			echo "| \`$kver\` ($(ver "$rel")) | $res | $how, $secs s, $date |"
		done <"$BOOT"
	else
		echo "| - | not run yet | \`make compat-boot\` |"
	fi
	echo
	echo "## For the README"
	echo
	echo "| Debian | kernel | builds with -Werror | dkms build | boot-tested (in-guest suite) |"
	echo "|---|---|---|---|---|"
	order "$TSV" | while IFS=$'\t' read -r rel kver hdr cc bw build warn tb dkms rest; do
		b=$(boot_of "$kver")
		if [ "$kver" = "$MAKE_TEST_KVER" ]; then
			b="every \`make test\` (CI)"
		elif [ "$b" = - ]; then
			b="no"
		fi
		echo "| $(ver "$rel") | $kver (${cc}) | $build | $dkms | $b |"
	done
} >"$OUTMD"
echo "render.sh: wrote $OUTMD" >&2

#!/bin/bash
# Installs what `make test` and `make demo` need, only when it is missing:
# Debian's kernel image and headers (the guest kernel), QEMU, the compiler,
# Debian 12's python3-typer/cffi/jinja2 (msrctl must run on them too) and
# python3-click-man (the package build's man pages), Prometheus and its
# Python client (msrctl exporter and its tests), and a
# virtual environment .venv with the latest PyPI releases plus virtme-ng.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(
	qemu-system-x86 linux-image-amd64 linux-headers-amd64 busybox-static
	build-essential libc6-dev linux-libc-dev kmod udev util-linux
	# the guest tests' 32-bit (compat ioctl) program
	gcc-multilib
	python3 python3-venv python3-pytest python3-typer python3-cffi python3-jinja2 python3-numpy
	python3-click-man python3-pytest-timeout
	dkms dh-dkms debhelper dh-python pybuild-plugin-pyproject python3-all
	python3-setuptools dpkg-dev fakeroot lintian
	# make deb: the clean chroot build and piuparts; make test-deb: the autopkgtest runner
	# in the guest, and autodep8's dkms test dependency (linux-doc), present
	# beforehand because the guest has no network
	pbuilder debootstrap piuparts autopkgtest autodep8 linux-doc
	# msrctl exporter: its library, and the real Prometheus server and promtool its tests use
	python3-prometheus-client prometheus
	# make test-system: the disk image (mkfs.ext4 -d) and its /boot read back (debugfs)
	e2fsprogs
)

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	echo "bootstrap: installing ${missing[*]}"
	SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
# Rebuilt only when what it installs changes: the requirements, and
# pyproject's dependency and entry-point lines.
stamp=.venv/.bootstrap-$( (sed -n '/^dependencies = \[/,/^\]/p;/^\[project.scripts\]/,/^$/p' pyproject.toml
	cat tests/requirements.txt) | sha1sum | cut -c1-12)
if [ ! -e "$stamp" ]; then
	echo "bootstrap: creating .venv"
	rm -rf .venv
	"$PY" -m venv .venv
	.venv/bin/pip install -q --disable-pip-version-check -e . -r tests/requirements.txt
	touch "$stamp"
fi

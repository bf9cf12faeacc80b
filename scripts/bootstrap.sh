#!/bin/sh
# Bring this machine up for mkh: the Debian packages the harness needs, then
# a virtualenv with the harness installed.  Quick and silent when all is there.
set -eu

cd "$(dirname "$0")/.."

PACKAGES="qemu-system-x86 busybox-static build-essential flex bison bc libelf-dev lcov \
libssl-dev cpio ccache device-tree-compiler git python3-venv xz-utils lz4 binutils \
dropbear-bin openssh-sftp-server nodejs"

missing=""
for pkg in $PACKAGES; do
	if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed"; then
		missing="$missing $pkg"
	fi
done

if [ -n "$missing" ]; then
	if [ "$(id -u)" = 0 ]; then
		sudo=""
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
		sudo="sudo"
	else
		echo "mkh: missing Debian packages:$missing" >&2
		echo "mkh: install them as root: apt-get install$missing" >&2
		exit 1
	fi
	echo "mkh: installing Debian packages:$missing"
	$sudo apt-get update -q
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends $missing
fi

PYTHON=${PYTHON:-python3}
stamp=.venv/.mkh-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -x .venv/bin/python ]; then
	echo "mkh: creating .venv"
	"$PYTHON" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
	echo "mkh: installing the harness into .venv"
	.venv/bin/pip install -q --upgrade pip
	.venv/bin/pip install -q -e '.[test]'
	echo "$want" > "$stamp"
fi

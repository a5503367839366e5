#!/usr/bin/env bash
# Print the path of a headless-capable Chromium, installing Debian's
# `chromium` package first when none is on PATH. The backtest report test
# (backtest/html_test.go) renders the HTML report with it; CI runs this
# script before the tests, developers may too.
#
# Usage: scripts/chromium.sh
#
# Installs with apt-get (through sudo when not root); when the install fails,
# runs `apt-get update` and tries once more. Everything but the final path
# goes to stderr, so `CHROMIUM=$(scripts/chromium.sh)` works.
set -euo pipefail

find_chromium() {
	local name
	for name in chromium chromium-browser google-chrome-stable google-chrome; do
		if command -v "$name" >/dev/null 2>&1; then
			command -v "$name"
			return 0
		fi
	done
	return 1
}

if path=$(find_chromium); then
	echo "$path"
	exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
	echo "chromium.sh: no chromium on PATH and no apt-get to install it; install Chromium by hand" >&2
	exit 1
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
	if ! command -v sudo >/dev/null 2>&1; then
		echo "chromium.sh: not root and no sudo: cannot install chromium" >&2
		exit 1
	fi
	sudo=(sudo)
fi

install() {
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends chromium >&2
}

echo "chromium.sh: installing Debian's chromium package" >&2
if ! install; then
	echo "chromium.sh: install failed; updating the package lists and retrying" >&2
	"${sudo[@]}" apt-get update >&2
	install
fi

if ! path=$(find_chromium); then
	echo "chromium.sh: chromium was installed but is not on PATH" >&2
	exit 1
fi
echo "$path"

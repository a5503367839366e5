#!/usr/bin/env bash
# Checks Vigil's Prometheus alerting rules and runs their unit tests:
#
#   promtool check rules deploy/prometheus/vigil-alerts.yaml
#   promtool test rules  deploy/prometheus/vigil-alerts.test.yaml
#
# When promtool is not on PATH it installs Debian's `prometheus` package
# (promtool 2.42 on bookworm) with apt-get, as root or through sudo; it
# downloads nothing else. Note: on a host that runs systemd, installing that
# package also enables and starts a Prometheus server (`systemctl disable
# --now prometheus` stops it); containers with the usual policy-rc.d don't.
#
# Idempotent, one line per check on success, non-zero exit on any failure.
# deploy/deploy_test.go runs it (always under CI=true).
set -euo pipefail
cd "$(dirname "$0")/.."

RULES=deploy/prometheus/vigil-alerts.yaml
TESTS=deploy/prometheus/vigil-alerts.test.yaml

die() {
	echo "promtool.sh: $*" >&2
	exit 1
}

install_promtool() {
	command -v apt-get >/dev/null 2>&1 ||
		die "promtool is not on PATH and apt-get is not available: install Prometheus' promtool (2.42 or later) by hand and re-run"
	local sudo=()
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null 2>&1 ||
			die "promtool is not on PATH and installing it needs root: run 'apt-get install -y --no-install-recommends prometheus' as root, or install promtool by hand"
		sudo=(sudo)
		[ -t 0 ] || sudo=(sudo -n) # never wait for a password nobody can type
	fi
	local log
	log=$(mktemp)
	# shellcheck disable=SC2064
	trap "rm -f '$log'" EXIT
	local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=300)
	echo "promtool.sh: promtool not found, installing Debian's prometheus package" >&2
	if ! "${apt[@]}" install --no-install-recommends prometheus >"$log" 2>&1; then
		# Usually stale package lists: refresh them once and retry.
		if ! { "${apt[@]}" update && "${apt[@]}" install --no-install-recommends prometheus; } >>"$log" 2>&1; then
			cat "$log" >&2
			die "could not install the prometheus package with apt-get (output above); install promtool by hand and re-run"
		fi
	fi
	hash -r
	command -v promtool >/dev/null 2>&1 || die "the prometheus package is installed but promtool is still not on PATH"
}

command -v promtool >/dev/null 2>&1 || install_promtool

# run NAME CMD...: quiet on success (one line), the tool's output on failure.
run() {
	local name=$1 out
	shift
	if out=$("$@" 2>&1); then
		echo "ok   $name"
	else
		printf '%s\n' "$out" >&2
		echo "FAIL $name" >&2
		return 1
	fi
}

status=0
run "promtool check rules $RULES" promtool check rules "$RULES" || status=1
run "promtool test rules $TESTS" promtool test rules "$TESTS" || status=1
exit "$status"

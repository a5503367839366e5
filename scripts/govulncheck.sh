#!/usr/bin/env bash
# Known vulnerabilities in the code Vigil actually calls: govulncheck at a
# pinned version, against the Go vulnerability database. `make test` runs it.
#
# The database comes from, in this order:
#   1. https://vuln.go.dev, when it answers within 5 seconds;
#   2. the golang.org/x/vulndb module fetched through the Go module proxy (the
#      same source of truth: its data/osv holds one OSV file per advisory, which
#      govulncheck reads as a database with -db file:///…/osv), copied once per
#      module version into .cache/vulndb/<version>/osv;
#   3. the newest copy already in .cache/vulndb, when the proxy is unreachable
#      too (the script says how old it is).
# With none of them, or when govulncheck itself cannot be fetched, it prints
# "govulncheck: skipped: <reason>" and exits 0: a machine without network must
# not fail the build on a check it cannot run.
#
# Exit status: govulncheck's. 0 when no vulnerability reaches Vigil's code, 3
# when one does (it prints the advisory, the fixed version and a call trace:
# upgrade the module with `go get module@fixed`, or the Go toolchain for
# standard library findings), 1 on an error.
#
# Environment (defaults in brackets):
#   GO                   go command [go]
#   GOVULNCHECK_VERSION  golang.org/x/vuln version [v1.9.0]
#   GOVULNCHECK_FLAGS    extra govulncheck flags, e.g. "-show verbose" []
#   VULNDB_URL           online database [https://vuln.go.dev]
#   VULNDB_VERSION       golang.org/x/vulndb module version for 2 [latest]
#   VULNDB_OFFLINE=1     skip 1 and go straight to the module proxy
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
GOVULNCHECK_VERSION=${GOVULNCHECK_VERSION:-v1.9.0}
VULNDB_URL=${VULNDB_URL:-https://vuln.go.dev}
VULNDB_VERSION=${VULNDB_VERSION:-latest}
cache=.cache/vulndb

skip() {
	echo "govulncheck: skipped: $*"
	exit 0
}

# json_field NAME reads "NAME": "value" from go's -json output on stdin.
json_field() { sed -n "s/^[[:space:]]*\"$1\": \"\(.*\)\",\{0,1\}\$/\1/p" | head -n 1; }

db=""
if [[ "${VULNDB_OFFLINE:-}" != 1 ]] && command -v curl >/dev/null &&
	curl -fsS -m 5 -o /dev/null "$VULNDB_URL/index/db.json.gz" 2>/dev/null; then
	db=$VULNDB_URL
	echo "govulncheck: database $VULNDB_URL"
else
	why="is unreachable"
	[[ "${VULNDB_OFFLINE:-}" == 1 ]] && why="is not tried (VULNDB_OFFLINE=1)"
	echo "govulncheck: $VULNDB_URL $why; using golang.org/x/vulndb@$VULNDB_VERSION from the module proxy"
	# Outside the module, so that go.mod and go.sum stay as they are.
	if info=$(cd "${TMPDIR:-/tmp}" && GOFLAGS=-mod=mod "$GO" mod download -json "golang.org/x/vulndb@$VULNDB_VERSION" 2>&1); then
		version=$(json_field Version <<<"$info")
		dir=$(json_field Dir <<<"$info")
		if [[ -z "$version" || ! -d "$dir/data/osv" ]]; then
			skip "golang.org/x/vulndb@$VULNDB_VERSION has no data/osv directory; its layout changed: set VULNDB_VERSION to an older version"
		fi
		if [[ ! -d "$cache/$version/osv" ]]; then
			mkdir -p "$cache"
			tmp=$(mktemp -d "$cache/.tmp.XXXXXX")
			cp -R "$dir/data/osv" "$tmp/osv"
			chmod -R u+w "$tmp" # the module cache is read-only; make clean must be able to remove the copy
			mkdir -p "$cache/$version"
			mv "$tmp/osv" "$cache/$version/osv"
			rmdir "$tmp"
		fi
		db_dir=$cache/$version/osv
	else
		echo "govulncheck: the module proxy did not answer either: $(json_field Error <<<"$info" || true)$(grep -v '^[[:space:]]*[{}"]' <<<"$info" | tail -n 1)"
		db_dir=$(ls -d "$cache"/*/osv 2>/dev/null | sort | tail -n 1 || true)
		if [[ -z "$db_dir" ]]; then
			skip "neither $VULNDB_URL nor the Go module proxy is reachable, and .cache/vulndb holds no earlier copy of the database"
		fi
		echo "govulncheck: using the cached copy $db_dir; it may miss advisories published since"
	fi
	echo "govulncheck: database $db_dir ($(ls "$db_dir" | wc -l | tr -d ' ') advisories)"
	db=file://$PWD/$db_dir
fi

# govulncheck itself, built once per version into .cache.
bin=$PWD/.cache/govulncheck/$GOVULNCHECK_VERSION
if [[ ! -x "$bin/govulncheck" ]]; then
	if ! out=$(cd "${TMPDIR:-/tmp}" && GOFLAGS=-mod=mod GOBIN=$bin "$GO" install "golang.org/x/vuln/cmd/govulncheck@$GOVULNCHECK_VERSION" 2>&1); then
		skip "cannot build golang.org/x/vuln/cmd/govulncheck@$GOVULNCHECK_VERSION: $(tail -n 1 <<<"$out")"
	fi
fi
# shellcheck disable=SC2086 # GOVULNCHECK_FLAGS is a list of flags
exec "$bin/govulncheck" -db "$db" ${GOVULNCHECK_FLAGS:-} ./...

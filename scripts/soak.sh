#!/usr/bin/env bash
# The long profile of the reliability suite (docs/reliability.md): every fuzz
# target for minutes instead of its seed corpus, then the crash, fault,
# outage, reload and response tests several times over with the race
# detector, then one summary. `make soak` runs it; `make test` is the short
# profile.
#
# Usage: scripts/soak.sh
#
# Environment (defaults in brackets):
#   GO                 go command [go]
#   FUZZ_TARGETS       package:FuzzName pairs [the Makefile's list; when run
#                      directly, every func Fuzz… found in *_test.go files]
#   SOAK_FUZZTIME      time per fuzz target, a go duration; 0 skips fuzzing [5m]
#   SOAK_FUZZMINIMIZE  -fuzzminimizetime: budget for minimising each new input [100x]
#   SOAK_PARALLEL      fuzz workers per target [1]
#   SOAK_COUNT         runs of each test (go test -count); 0 skips the tests [3]
#   SOAK_RUN           go test -run pattern
#                      [Kill9|Survives|Fault|Outage|Reload|Responds|Restart|Crash]
#   SOAK_PKGS          packages of those tests [./cmd/vigil/ ./pipeline/ ./responders/]
#   SOAK_TIMEOUT       go test -timeout for the tests [60m]
#
# Logs go to .cache/soak/<UTC time>/; a fuzz failure leaves its input in the
# package's testdata/fuzz/<FuzzName>/ as usual (go test -run=<FuzzName>/<file>
# replays it). Exit status 1 if anything failed. A fuzz target that go test
# fails with "context deadline exceeded" and no failing input is reported as
# FLAKE, not a failure: that is Go's fuzz coordinator racing its own deadline
# (go.dev/issue/75804, fixed in Go 1.27).
#
# `make fuzz` runs this script with SOAK_FUZZTIME=$(FUZZTIME) and SOAK_COUNT=0.
set -uo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
SOAK_FUZZTIME=${SOAK_FUZZTIME:-5m}
SOAK_FUZZMINIMIZE=${SOAK_FUZZMINIMIZE:-100x}
SOAK_PARALLEL=${SOAK_PARALLEL:-1}
SOAK_COUNT=${SOAK_COUNT:-3}
SOAK_RUN=${SOAK_RUN:-Kill9|Survives|Fault|Outage|MidStream|Flaky|Acceptance|KeyedReplicas|Reload|Responds|Restart|Crash}
SOAK_PKGS=${SOAK_PKGS:-./cmd/vigil/ ./pipeline/ ./responders/}
SOAK_TIMEOUT=${SOAK_TIMEOUT:-60m}

logs=.cache/soak/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$logs"

# discover lists package:FuzzName for every fuzz target in the repository.
discover() {
	grep -rE --include='*_test.go' -o '^func Fuzz[A-Za-z0-9_]*' . |
		sed -E 's#^\./(.*)/[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*)$#\1:\2#' | sort -u
}

found=$(discover)
targets=${FUZZ_TARGETS:-$found}
for t in $found; do
	if [[ " $(echo $targets) " != *" $t "* ]]; then
		echo "soak: warning: fuzz target $t is not in FUZZ_TARGETS (add it to the Makefile)"
	fi
done

summary=()
failed=0
note() { summary+=("$(printf '%-6s %-44s %s' "$1" "$2" "$3")"); [[ $1 == FAIL ]] && failed=1; return 0; }

if [[ "$SOAK_FUZZTIME" != 0 ]]; then
	for t in $targets; do
		pkg=${t%%:*} name=${t#*:}
		log=$logs/fuzz-${pkg//\//-}-$name.log
		echo "== fuzz $pkg $name for $SOAK_FUZZTIME (log $log)"
		start=$SECONDS
		"$GO" test -run='^$' -fuzz="^${name}\$" -fuzztime="$SOAK_FUZZTIME" \
			-fuzzminimizetime="$SOAK_FUZZMINIMIZE" -parallel="$SOAK_PARALLEL" "./$pkg/" >"$log" 2>&1
		status=$?
		execs=$(grep -o 'execs: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
		detail="${execs:-?} execs in $((SECONDS - start))s"
		input=$(grep -o 'testdata/fuzz/[^ ]*' "$log" | head -n 1)
		if [[ $status == 0 ]]; then
			note PASS "fuzz $pkg $name" "$detail, 0 failures"
		elif [[ -z "$input" ]] && grep -q '^    context deadline exceeded$' "$log"; then
			# Go's fuzz coordinator can fail a target at the -fuzztime
			# deadline without any failing input (go.dev/issue/75804, fixed
			# in Go 1.27): not a finding.
			note FLAKE "fuzz $pkg $name" "$detail, 0 failures; go test stopped with \"context deadline exceeded\" and no failing input (go.dev/issue/75804)"
		else
			note FAIL "fuzz $pkg $name" "$detail; ${input:+input $pkg/$input; }see $log"
			tail -n 20 "$log"
		fi
	done
fi

if [[ "$SOAK_COUNT" != 0 ]]; then
	log=$logs/tests.log
	echo "== go test -race -count=$SOAK_COUNT -run '$SOAK_RUN' $SOAK_PKGS (log $log)"
	start=$SECONDS
	# shellcheck disable=SC2086 # SOAK_PKGS is a list of packages
	"$GO" test -race -v -count="$SOAK_COUNT" -timeout="$SOAK_TIMEOUT" -run "$SOAK_RUN" $SOAK_PKGS >"$log" 2>&1
	status=$?
	# Top-level results only: subtests are indented.
	passed=$(grep -c '^--- PASS' "$log")
	fails=$(grep '^--- FAIL' "$log" | awk '{print $3}' | sort | uniq -c | awk '{printf "%s%s×%s", sep, $2, $1; sep=", "}')
	skipped=$(grep -c '^--- SKIP' "$log")
	detail="$passed passed, $skipped skipped in $((SECONDS - start))s"
	if [[ $status == 0 ]]; then
		note PASS "tests ×$SOAK_COUNT, race detector" "$detail"
	else
		note FAIL "tests ×$SOAK_COUNT, race detector" "$detail; failed: ${fails:-see the log}; see $log"
		grep -E '^(--- FAIL|FAIL|panic:|WARNING: DATA RACE)' "$log" | head -n 20
	fi
	grep -E '^(ok|FAIL|---)' "$log" | grep -v -- '--- PASS' | sed 's/^/   /'
	ran=$(grep '^--- PASS' "$log" | awk '{print $3}' | sort -u | tr '\n' ' ')
	summary+=("       (passed: ${ran:-none})")
fi

echo
echo "== soak summary (logs in $logs)"
printf '%s\n' "${summary[@]}"
exit $failed

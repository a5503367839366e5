#!/usr/bin/env bash
# make demo-replay: generate 30 minutes of platform traffic with every attack mixed in, replay it
# through the shipped rule pack (configs/rules) and show what fires. Needs only Go; no Kafka or
# ClickHouse (`make demo`, scripts/demo-daemon.sh, runs the daemon on the same traffic). The
# detector is the daemon's, so the alerts are the same.
set -euo pipefail
cd "$(dirname "$0")/.."

VIGIL=${VIGIL:-bin/vigil}
OUT=.cache/demo
START=${START:-2026-11-23T14:00:00Z}   # a Monday afternoon (UTC): Europe and the US both busy

if command -v make >/dev/null 2>&1; then
	make --no-print-directory build >/dev/null
else
	CGO_ENABLED=0 go build -trimpath -o "$VIGIL" ./cmd/vigil
fi

rm -rf "$OUT"
echo "==> generating 30 minutes of traffic from $START with every attack into $OUT/"
"$VIGIL" generate --out "$OUT" --start "$START" --duration 30m --seed 1 --attacks all

# The report helper is compiled first so that its build time does not delay the alerts.
go build -o "$OUT/demo-report" scripts/demo-report.go

echo
echo "==> replaying through configs/rules (one line per alert, in event time)"
"$VIGIL" replay --rules configs/rules --requests "$OUT/requests.jsonl" --audit "$OUT/audit.jsonl" \
	2>"$OUT/replay-summary.txt" | tee "$OUT/alerts.jsonl" | "$OUT/demo-report" "$OUT/attacks.json"

echo
echo "==> replay summary"
head -n 1 "$OUT/replay-summary.txt"

cat <<EOF

==> next
  $OUT/alerts.jsonl                    the alerts as JSON, one per line
  $OUT/attacks.json                    what was injected, when, and which rules should fire
  $VIGIL rules test configs/rules/tests    the pack's unit tests (fires and near misses per rule)
  $VIGIL rules lint configs/rules          check rule files; edit one and run the demo again
  $VIGIL generate --out /tmp/day --attacks none && \\
    $VIGIL replay --rules configs/rules --requests /tmp/day/requests.jsonl --audit /tmp/day/audit.jsonl
                                       a whole benign day (~5 million events): no alert expected
  docs/rule-pack.md                    every rule: what it detects, severity, tuning, false positives
EOF

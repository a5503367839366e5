#!/usr/bin/env bash
# make demo: the whole daemon on this machine. Starts a real ClickHouse server
# and the development Kafka broker, runs `vigil run` with the shipped rule
# pack, produces 30 minutes of generated platform traffic (every attack mixed
# in, a few invalid lines) to the topics, shows each alert as it is stored,
# and ends with a summary and the ClickHouse queries to run next.
# Needs only Go (plus gcc, curl and npm, which the Go image has). Ctrl-C stops
# everything.
set -euo pipefail
cd "$(dirname "$0")/.."

VIGIL=${VIGIL:-bin/vigil}
OUT=.cache/demo
START=${START:-2026-11-23T14:00:00Z}   # a Monday afternoon (UTC)
BROKER=127.0.0.1:${DEMO_KAFKA_PORT:-19092}
OPS=127.0.0.1:${DEMO_OPS_PORT:-19464}
export CLICKHOUSE_DIR=$PWD/.cache/demo-clickhouse
export CLICKHOUSE_TCP_PORT=${DEMO_CLICKHOUSE_PORT:-19000} CLICKHOUSE_HTTP_PORT=${DEMO_CLICKHOUSE_HTTP_PORT:-18123}
DB=vigil_demo
CH_HTTP=http://127.0.0.1:$CLICKHOUSE_HTTP_PORT/

pids=()
cleanup() {
	trap - EXIT INT TERM
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	bash scripts/clickhouse.sh stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'echo; echo "==> interrupted; stopping"; exit 130' INT TERM

chq() { curl -sf --data-binary "$1" "$CH_HTTP"; }

make --no-print-directory build >/dev/null
rm -rf "$OUT" "$CLICKHOUSE_DIR"
mkdir -p "$OUT"

echo "==> starting ClickHouse (first run downloads its engine, ~180 MB, cached in .cache/)"
bash scripts/clickhouse.sh start | sed 's/^/    /'

echo "==> starting the development Kafka broker on $BROKER"
"$VIGIL" dev broker --addr "$BROKER" --data "$OUT/broker" --topic requests=1 --topic audit=1 \
	--topic vigil.deadletter=1 --log-level error >"$OUT/broker.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q "broker ready" "$OUT/broker.log" 2>/dev/null && break; sleep 0.1; done
grep -q "broker ready" "$OUT/broker.log" || { cat "$OUT/broker.log"; exit 1; }

echo "==> generating 30 minutes of traffic from $START with every attack"
"$VIGIL" generate --out "$OUT/traffic" --start "$START" --duration 30m --seed 1 --attacks all --invalid 2 -q

cat >"$OUT/vigil.yaml" <<YAML
kafka:
  brokers: ["$BROKER"]
  group_id: vigil-demo
  dead_letter_topic: vigil.deadletter
clickhouse:
  addr: ["127.0.0.1:$CLICKHOUSE_TCP_PORT"]
  database: $DB
  batch_size: 20000
  batch_interval: 500ms
rules:
  paths: ["$PWD/configs/rules"]
ops:
  addr: $OPS
log:
  level: warn
  format: text
YAML
"$VIGIL" config check "$OUT/vigil.yaml" | sed 's/^/    /'

go build -o "$OUT/demo-report" scripts/demo-report.go
echo "==> running the daemon (vigil run --config $OUT/vigil.yaml); alerts as they are stored:"
"$VIGIL" run --config "$OUT/vigil.yaml" --print-alerts 2>"$OUT/vigil.log" \
	| tee "$OUT/alerts.jsonl" | "$OUT/demo-report" "$OUT/traffic/attacks.json" &
pids+=($!)
daemon_pipe=$!

"$VIGIL" dev produce --brokers "$BROKER" --requests "$OUT/traffic/requests.jsonl" \
	--audit "$OUT/traffic/audit.jsonl" >"$OUT/produce.log"

# Wait until the daemon has stored everything: the stored counts stop moving.
last=-1
for _ in $(seq 120); do
	sleep 1
	now=$(chq "SELECT (SELECT count() FROM $DB.request_events) + (SELECT count() FROM $DB.audit_events) + (SELECT count() FROM $DB.dead_letters)" 2>/dev/null || echo 0)
	[ "$now" = "$last" ] && [ "$now" != 0 ] && break
	last=$now
done
# …and until the responders have triaged every alert into an incident.
for _ in $(seq 60); do
	pending=$(chq "SELECT count() FROM $DB.alerts FINAL WHERE alert_key NOT IN (SELECT arrayJoin(alert_keys) FROM $DB.incidents)" 2>/dev/null || echo 1)
	[ "$pending" = 0 ] && break
	sleep 1
done
sleep 1
echo
echo "==> the daemon's metrics (http://$OPS/metrics; health at /healthz and /readyz)"
curl -sf "http://$OPS/metrics" | grep -E '^vigil_(ingest_records_consumed_total|detector_events_total|responders_incidents_opened_total|rules_loaded|pipeline_buffered_records)' \
	| grep -v ' 0$' | sed 's/^/    /' || true
pkill -TERM -f "$VIGIL run --config $OUT/vigil.yaml" 2>/dev/null || true
wait "$daemon_pipe" 2>/dev/null || true

echo
echo "==> stored in ClickHouse ($DB)"
chq "SELECT (SELECT uniqExact(request_id) FROM $DB.request_events) AS request_events,
            (SELECT uniqExact(event_id) FROM $DB.audit_events) AS audit_events,
            (SELECT count() FROM $DB.dead_letters FINAL) AS dead_letters,
            (SELECT count() FROM $DB.alerts FINAL) AS alerts FORMAT PrettyCompactNoEscapes" | sed 's/^/    /'
chq "SELECT reason, count() AS n FROM $DB.dead_letters FINAL GROUP BY reason ORDER BY n DESC LIMIT 5 FORMAT PrettyCompactNoEscapes" | sed 's/^/    /'

echo
echo "==> incidents and the dry-run response (responders.dry_run is on by default: nothing is called)"
chq "SELECT severity_name AS severity, count() AS incidents, countIf(phi) AS phi, sum(alerts) AS alerts FROM $DB.incidents FINAL
     GROUP BY severity, severity ORDER BY any(severity) FORMAT PrettyCompactNoEscapes" | sed 's/^/    /'
chq "SELECT kind, outcome, guard, count() AS n FROM $DB.actions GROUP BY kind, outcome, guard ORDER BY kind, outcome, guard
     FORMAT PrettyCompactNoEscapes" | sed 's/^/    /'
first=$(chq "SELECT id FROM $DB.incidents FINAL WHERE severity = 1 ORDER BY opened_at, id LIMIT 1" 2>/dev/null || true)
if [ -n "$first" ]; then
	echo "==> $VIGIL incidents show $first --config $OUT/vigil.yaml"
	"$VIGIL" incidents show "$first" --config "$OUT/vigil.yaml" 2>&1 | sed 's/^/    /'
fi

cat <<EOF

==> next (ClickHouse stops when this script ends; run scripts/clickhouse.sh start to query it later)
  SELECT rule, severity, at, group_json, value FROM $DB.alerts FINAL ORDER BY at
  SELECT ts, ip, route, status FROM $DB.request_events WHERE ip = '<an alert's ip>' ORDER BY ts
  SELECT reason, raw FROM $DB.dead_letters LIMIT 10
  $VIGIL incidents list --config $OUT/vigil.yaml      (needs ClickHouse running)
  docs/responders.md         incidents, actions, guards, and going from dry run to enforcement
  docs/operations.md         metrics, dashboard (deploy/grafana), alerts, hot reload, deployment
  $OUT/vigil.yaml        the daemon's configuration ($VIGIL config check $OUT/vigil.yaml)
  $OUT/alerts.jsonl      the alerts as JSON, one per line
  docs/daemon.md             delivery guarantees, tables, configuration
  docs/rule-pack.md          every rule: what it detects, severity, tuning, false positives
EOF

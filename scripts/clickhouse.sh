#!/usr/bin/env bash
# A real ClickHouse server on loopback for tests, CI and the demo, without Docker
# or a distro package: chDB's embedded ClickHouse engine (libchdb.so from npm)
# run by a tiny C launcher (scripts/chdb-launcher.c) as a TCP + HTTP server.
#
# Usage: scripts/clickhouse.sh install|start|stop|restart|status|env|logs
#        scripts/clickhouse.sh start-cluster|stop-cluster|status-cluster|env-cluster
#
#   install  fetch libchdb.so (npm pack, sha256-checked) and build the launcher
#            into .cache/chdb; a no-op when both are already there
#   start    install if needed, start the server and a watchdog that restarts
#            it (same data dir) if it dies; waits for HTTP /ping; a no-op with
#            a message when it is already running. A config.xml in the
#            instance dir is passed to the engine (--config-file): server
#            settings such as remote_servers and macros
#   stop     clean stop (kill the keep-alive query), SIGTERM/SIGKILL fallback
#   restart  stop, then start with the same data dir
#   status   exit 0 when the server answers /ping
#   env      print `export VIGIL_CLICKHOUSE_ADDR=...` lines for eval
#   logs     print the tails of the server, launcher and watchdog logs
#
#   start-cluster   start one server per shard of a cluster (default: two),
#                   each an instance as above in $CLICKHOUSE_CLUSTER_DIR/shardN
#                   with a config.xml naming all of them in remote_servers
#                   (cluster $CLICKHOUSE_CLUSTER_NAME, one replica per shard)
#                   and macros shard=N, replica=shardN; a no-op for shards
#                   already running. It stops the shards it started when one
#                   fails to start. Stop and start one shard with the single
#                   commands and CLICKHOUSE_DIR=$CLICKHOUSE_CLUSTER_DIR/shardN
#   stop-cluster    stop every shard (data kept)
#   status-cluster  exit 0 when every shard answers /ping
#   env-cluster     print `export VIGIL_CLICKHOUSE_CLUSTER=...` and
#                   `export VIGIL_CLICKHOUSE_SHARDS=host:port,...` lines
#
# The cluster has no Keeper: chDB's engine runs as clickhouse-local, which
# never starts keeper_server and refuses ON CLUSTER DDL ("Replicated DDL
# queries are disabled"), so its shards cannot replicate and DDL must be run
# on each shard (Vigil does that with clickhouse.shards, see
# docs/clickhouse-cluster.md). Distributed tables work.
#
# Environment (defaults in brackets):
#   CLICKHOUSE_TCP_PORT   native protocol port [19000]
#   CLICKHOUSE_HTTP_PORT  HTTP port [18123]
#   CLICKHOUSE_DIR        instance dir: pid files, logs, ports [.cache/clickhouse];
#                         one server per dir, use another dir for a second one
#   CLICKHOUSE_DATA       data dir (--path) [$CLICKHOUSE_DIR/data]
#   CLICKHOUSE_MAX_MEMORY max_server_memory_usage in bytes [2147483648]
#   CLICKHOUSE_LOG_LEVEL  server.log level: trace, debug, information, warning,
#                         error [information: start-up lines and errors only]
#   CLICKHOUSE_START_TIMEOUT seconds to wait for /ping [60]
#   CLICKHOUSE_OWNER_PID  if set, the watchdog stops the server when that
#                         process is gone (test binaries use this)
#   CLICKHOUSE_REMOVE_DIR_WITH_OWNER=1  and then removes CLICKHOUSE_DIR too
#   CHDB_DIR              where libchdb.so and the launcher are cached [.cache/chdb]
#
# Cluster commands (each shard also honours the variables above except the
# ports and dirs, which these set):
#   CLICKHOUSE_CLUSTER_DIR        holds shard1, shard2, ... [.cache/clickhouse-cluster]
#   CLICKHOUSE_CLUSTER_NAME       cluster name in remote_servers [vigil]
#   CLICKHOUSE_CLUSTER_TCP_PORTS  native ports, one per shard [19101,19102]
#   CLICKHOUSE_CLUSTER_HTTP_PORTS HTTP ports, one per shard [18201,18202]
#
# Needs bash, coreutils, tar, gzip, flock (util-linux), gcc, npm; curl is used
# for HTTP when present (otherwise plain HTTP over bash's /dev/tcp).
#
# Never write anything but HTTP to the HTTP port, nor anything but the native
# protocol to the TCP port: the engine aborts on a protocol error (the watchdog
# then restarts it, keeping the data).
set -euo pipefail

SELF=$(realpath -- "${BASH_SOURCE[0]}")
ROOT=$(dirname -- "$(dirname -- "$SELF")")

CHDB_PKG=@chdb/lib-linux-x64-gnu
CHDB_PKG_VERSION=26.7.3-stable.1
CHDB_ENGINE_VERSION=26.7.3
CHDB_SHA256=36ad4e999882821ef13cf2d0f52c93f48e6ee1b4498b35a201c23ce4b8d15bf5
CHDB_DIR=$(realpath -m -- "${CHDB_DIR:-$ROOT/.cache/chdb}")
LIB=$CHDB_DIR/libchdb.so
LAUNCHER=$CHDB_DIR/chdb-launcher
LAUNCHER_SRC=$ROOT/scripts/chdb-launcher.c

CH_DIR=$(realpath -m -- "${CLICKHOUSE_DIR:-$ROOT/.cache/clickhouse}")
CH_DATA=$(realpath -m -- "${CLICKHOUSE_DATA:-$CH_DIR/data}")
TCP_PORT=${CLICKHOUSE_TCP_PORT:-19000}
HTTP_PORT=${CLICKHOUSE_HTTP_PORT:-18123}
MAX_MEMORY=${CLICKHOUSE_MAX_MEMORY:-2147483648}
LOG_LEVEL=${CLICKHOUSE_LOG_LEVEL:-information}
START_TIMEOUT=${CLICKHOUSE_START_TIMEOUT:-60}
OWNER_PID=${CLICKHOUSE_OWNER_PID:-}
REMOVE_DIR_WITH_OWNER=${CLICKHOUSE_REMOVE_DIR_WITH_OWNER:-}

# The keep-alive query: it never ends, so query_stable_v2 never returns until
# it is killed (KILL QUERY WHERE query_id='keepalive'), which is the clean stop.
# The 0.2 s sleep bounds how long the kill takes to be noticed (idle CPU is the
# same as with 1 s, <1% of a core). --poll_interval=1 (default 10) makes idle
# client connections notice the shutdown at once; without it a stop waits 5 s
# for them whatever shutdown_wait_unfinished says.
KEEPALIVE_QUERY="SYSTEM START LISTEN TCP; SYSTEM START LISTEN HTTP; SELECT sleepEachRow(0.2) FROM system.numbers SETTINGS max_block_size=1 FORMAT Null"

msg() { printf 'clickhouse: %s\n' "$*" >&2; }
die() { msg "$*"; exit 1; }
now() { printf '%s' "${EPOCHREALTIME/,/.}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# ---------------------------------------------------------------- install ---

lib_stamp() { stat -c '%s %Y %i' -- "$LIB" 2>/dev/null; }

# lib_ok: libchdb.so is there and has the pinned sha256. A full hash of the
# 566 MB file takes ~1.5 s, so a verified file's size/mtime/inode are recorded
# and later calls only compare those.
lib_ok() {
	[[ -f $LIB ]] || return 1
	local stamp
	stamp="$CHDB_SHA256 $(lib_stamp)"
	[[ -f $LIB.verified && $(<"$LIB.verified") == "$stamp" ]] && return 0
	local sum
	sum=$(sha256sum -- "$LIB" | cut -d' ' -f1)
	if [[ $sum != "$CHDB_SHA256" ]]; then
		msg "cached $LIB has sha256 $sum, want $CHDB_SHA256: fetching it again"
		return 1
	fi
	printf '%s\n' "$stamp" >"$LIB.verified"
}

fetch_lib() {
	command -v npm >/dev/null || die "npm is needed to fetch $CHDB_PKG (apt-get install npm)"
	local tmp t0
	t0=$(now)
	tmp=$(mktemp -d "$CHDB_DIR/fetch.XXXXXX")
	# shellcheck disable=SC2064
	trap "rm -rf -- '$tmp'" EXIT
	msg "fetching $CHDB_PKG@$CHDB_PKG_VERSION (178 MB) with npm pack"
	(cd "$tmp" && npm_config_update_notifier=false npm pack "$CHDB_PKG@$CHDB_PKG_VERSION" --pack-destination "$tmp" --loglevel=error >/dev/null) ||
		die "npm pack $CHDB_PKG@$CHDB_PKG_VERSION failed"
	local tgz=$tmp/chdb-lib-linux-x64-gnu-$CHDB_PKG_VERSION.tgz
	[[ -f $tgz ]] || die "npm pack left no $tgz"
	tar -xzf "$tgz" -C "$tmp" --strip-components=1 package/libchdb.so
	local sum
	sum=$(sha256sum -- "$tmp/libchdb.so" | cut -d' ' -f1)
	[[ $sum == "$CHDB_SHA256" ]] || die "libchdb.so from $CHDB_PKG@$CHDB_PKG_VERSION has sha256 $sum, want $CHDB_SHA256"
	mv -f -- "$tmp/libchdb.so" "$LIB"
	printf '%s %s\n' "$CHDB_SHA256" "$(lib_stamp)" >"$LIB.verified"
	rm -rf -- "$tmp"
	trap - EXIT
	msg "libchdb.so verified and cached in $CHDB_DIR ($(since "$t0") s)"
}

# build_launcher: (re)build it when missing or older than its source; fails
# (status 1) when there was nothing to do.
build_launcher() {
	[[ -x $LAUNCHER && $LAUNCHER -nt $LAUNCHER_SRC ]] && return 1
	command -v gcc >/dev/null || die "gcc is needed to build the launcher (apt-get install gcc libc6-dev)"
	gcc -O2 -Wall -Wextra -o "$LAUNCHER.tmp" "$LAUNCHER_SRC" -ldl
	mv -f -- "$LAUNCHER.tmp" "$LAUNCHER"
	msg "built $LAUNCHER"
}

cmd_install() {
	mkdir -p -- "$CHDB_DIR"
	(
		# Concurrent installs (parallel test binaries) wait for each other.
		flock 9
		local changed=0
		lib_ok || { fetch_lib && changed=1; }
		build_launcher && changed=1
		if ((changed)); then
			local v
			v=$("$LAUNCHER" "$LIB" --version) || die "$LAUNCHER cannot load $LIB"
			[[ $v == "$CHDB_ENGINE_VERSION" ]] || die "libchdb.so says version $v, want $CHDB_ENGINE_VERSION"
		fi
	) 9>"$CHDB_DIR/.lock"
}

# ------------------------------------------------------------------- HTTP ---

# http PORT PATH [BODY]: GET (no body) or POST to 127.0.0.1:PORT; prints the
# response body; fails unless the status is 2xx. Only ever sends HTTP.
http() {
	local port=$1 path=$2 body=${3-} timeout=${HTTP_TIMEOUT:-5}
	if [[ -z ${CLICKHOUSE_NO_CURL-} ]] && command -v curl >/dev/null; then
		if (($# < 3)); then
			curl -sf -m "$timeout" -- "http://127.0.0.1:$port$path"
		else
			curl -sf -m "$timeout" --data-binary "$body" -- "http://127.0.0.1:$port$path"
		fi
		return
	fi
	local method=GET
	(($# < 3)) || method=POST
	LC_ALL=C timeout "$timeout" bash -c '
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 7
		if [[ $2 == POST ]]; then
			printf "POST %s HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" "$3" "${#4}" "$4" >&3
		else
			printf "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" "$3" >&3
		fi
		resp=$(cat <&3)
		status=${resp%%$'\''\r\n'\''*}
		status=${status#* }
		status=${status%% *}
		printf "%s" "${resp#*$'\''\r\n\r\n'\''}"
		[[ $status == 2?? ]]
	' _ "$port" "$method" "$path" "$body"
}

ping_ok() { [[ $(HTTP_TIMEOUT=2 http "$1" /ping 2>/dev/null) == Ok.* ]]; }

# port_busy PORT: something accepts connections there. Connect-and-close
# without sending a byte, which ClickHouse (and anything else) tolerates.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# -------------------------------------------------------------- processes ---

# alive PID: the process exists and is not a zombie.
alive() {
	local pid=$1 stat
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	{ read -r stat <"/proc/$pid/stat"; } 2>/dev/null || return 1
	stat=${stat##*) }
	[[ ${stat:0:1} != Z ]]
}

has_arg() { # has_arg PID ARG: ARG is one of the process's argv
	tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null | grep -qxF -- "$2"
}

read_pid() { local p=; [[ -f $1 ]] && p=$(<"$1"); printf '%s' "$p"; }

# server_pid / watchdog_pid: print the pid of this instance's live process.
server_pid() {
	local p
	p=$(read_pid "$CH_DIR/server.pid")
	alive "$p" && has_arg "$p" "--path=$S_DATA" && printf '%s' "$p"
}
watchdog_pid() {
	local p
	p=$(read_pid "$CH_DIR/watchdog.pid")
	alive "$p" && has_arg "$p" __watchdog && has_arg "$p" "$CH_DIR" && printf '%s' "$p"
}

# wait_gone PID SECONDS: wait until the process has exited.
wait_gone() {
	local pid=$1 n=$(($2 * 20))
	while ((n-- > 0)); do
		alive "$pid" || return 0
		sleep 0.05
	done
	! alive "$pid"
}

# Instance state, written by start: the ports and paths the server runs with,
# so stop/status/env find it whatever the caller's environment says.
load_state() {
	S_TCP_PORT=$TCP_PORT S_HTTP_PORT=$HTTP_PORT S_DATA=$CH_DATA S_MAX_MEMORY=$MAX_MEMORY S_LOG_LEVEL=$LOG_LEVEL
	S_LIB=$LIB S_LAUNCHER=$LAUNCHER S_OWNER_PID=$OWNER_PID S_REMOVE_DIR_WITH_OWNER=$REMOVE_DIR_WITH_OWNER
	if [[ -f $CH_DIR/server.env ]]; then
		# shellcheck disable=SC1091
		. "$CH_DIR/server.env"
	fi
}

save_state() {
	local v
	: >"$CH_DIR/server.env.tmp"
	for v in S_TCP_PORT S_HTTP_PORT S_DATA S_MAX_MEMORY S_LOG_LEVEL S_LIB S_LAUNCHER S_OWNER_PID S_REMOVE_DIR_WITH_OWNER; do
		printf '%s=%q\n' "$v" "${!v}" >>"$CH_DIR/server.env.tmp"
	done
	mv -f -- "$CH_DIR/server.env.tmp" "$CH_DIR/server.env"
}

# stop_server PID: kill the keep-alive query (the engine then shuts down and
# the launcher exits 0, ~1 s), falling back to SIGTERM, then SIGKILL. The KILL
# is retried until it matched the query: a server that the watchdog is just
# restarting does not listen yet, or has not started that query yet.
stop_server() {
	local pid=$1 n=200 killed=0 out
	while alive "$pid" && ((n-- > 0)); do
		if ((!killed)); then
			out=$(HTTP_TIMEOUT=3 http "$S_HTTP_PORT" / "KILL QUERY WHERE query_id = 'keepalive' ASYNC" 2>/dev/null) || true
			[[ $out == *keepalive* ]] && killed=1
		fi
		sleep 0.05
	done
	alive "$pid" || return 0
	msg "server $pid still running 10 s after the stop began: SIGTERM"
	kill -TERM "$pid" 2>/dev/null || true
	wait_gone "$pid" 3 && return 0
	msg "server $pid ignored SIGTERM: SIGKILL"
	kill -KILL "$pid" 2>/dev/null || true
	wait_gone "$pid" 3
}

# --------------------------------------------------------------- watchdog ---

launch_server() {
	# Server settings that have no command-line form (remote_servers, macros).
	local config=()
	[[ -f $CH_DIR/config.xml ]] && config=("--config-file=$CH_DIR/config.xml")
	"$S_LAUNCHER" "$S_LIB" "${config[@]}" \
		"--path=$S_DATA" --listen_host=127.0.0.1 \
		"--tcp_port=$S_TCP_PORT" "--http_port=$S_HTTP_PORT" \
		--query_id=keepalive --poll_interval=1 \
		"--logger.log=$CH_DIR/server.log" "--log-level=$S_LOG_LEVEL" \
		--query "$KEEPALIVE_QUERY" \
		-- "--max_server_memory_usage=$S_MAX_MEMORY" --shutdown_wait_unfinished=0 \
		</dev/null >>"$CH_DIR/server.out" 2>&1 &
	SRV=$!
	printf '%s\n' "$SRV" >"$CH_DIR/server.pid.tmp"
	mv -f -- "$CH_DIR/server.pid.tmp" "$CH_DIR/server.pid"
	wlog "started server pid $SRV (tcp $S_TCP_PORT, http $S_HTTP_PORT, path $S_DATA)"
}

wlog() { printf '%s watchdog: %s\n' "$(date -u +%FT%T.%3NZ)" "$*"; }

# The watchdog owns the server process: it restarts it with the same --path
# when it dies unexpectedly (an engine abort, a stray KILL QUERY), at most 5
# times a minute; it stops it when signalled or when the owner process is gone.
cmd_watchdog() {
	load_state
	printf '%s\n' "$$" >"$CH_DIR/watchdog.pid"
	local term=0 owner_gone=0 status restarts=() t
	trap 'term=1' TERM INT HUP
	launch_server
	while :; do
		if ((term)) || { [[ -n $S_OWNER_PID ]] && ! alive "$S_OWNER_PID" && owner_gone=1; }; then
			if ((term)); then wlog "signalled: stopping the server"; else wlog "owner $S_OWNER_PID is gone: stopping the server"; fi
			: >"$CH_DIR/stopping"
			stop_server "$SRV"
		fi
		if ! alive "$SRV"; then
			status=0
			wait "$SRV" || status=$?
			if ((term)) || [[ -e $CH_DIR/stopping ]]; then
				wlog "server pid $SRV stopped (status $status)"
				break
			fi
			if [[ ! -e $CH_DIR/ready ]]; then
				wlog "server pid $SRV exited with status $status before it was ready: not restarting"
				break
			fi
			t=$EPOCHSECONDS
			local recent=()
			for r in "${restarts[@]}"; do ((t - r < 60)) && recent+=("$r"); done
			restarts=("${recent[@]}")
			if ((${#restarts[@]} >= 5)); then
				wlog "server pid $SRV exited with status $status, the 6th time within a minute: giving up"
				break
			fi
			wlog "server pid $SRV exited with status $status: restarting it with the same --path"
			sleep 0.3
			if ((term)) || [[ -e $CH_DIR/stopping ]]; then
				wlog "stop requested: not restarting"
				break
			fi
			restarts+=("$t")
			launch_server
			continue
		fi
		sleep 0.2
	done
	[[ $(read_pid "$CH_DIR/server.pid") == "$SRV" ]] && rm -f -- "$CH_DIR/server.pid"
	[[ $(read_pid "$CH_DIR/watchdog.pid") == "$$" ]] && rm -f -- "$CH_DIR/watchdog.pid"
	if ((owner_gone)) && [[ $S_REMOVE_DIR_WITH_OWNER == 1 ]]; then
		rm -rf -- "$CH_DIR"
	fi
}

# ------------------------------------------------------------- commands ---

addr_line() {
	printf 'native 127.0.0.1:%s, http http://127.0.0.1:%s (data %s, logs %s/server.{log,out})' \
		"$S_TCP_PORT" "$S_HTTP_PORT" "$S_DATA" "$CH_DIR"
}

show_logs() {
	local f
	for f in server.out server.log watchdog.log; do
		[[ -s $CH_DIR/$f ]] || continue
		printf -- '--- %s (last %s lines)\n' "$CH_DIR/$f" "${1:-20}" >&2
		tail -n "${1:-20}" -- "$CH_DIR/$f" >&2
	done
}

cmd_start() {
	local t0
	t0=$(now)
	cmd_install
	mkdir -p -- "$CH_DIR"
	(
		flock 8
		load_state
		local srv wd
		srv=$(server_pid) || true
		wd=$(watchdog_pid) || true
		if [[ -n $srv || -n $wd ]]; then
			local n=$((START_TIMEOUT * 10))
			until ping_ok "$S_HTTP_PORT"; do
				((n-- > 0)) || die "an instance in $CH_DIR runs (server pid ${srv:-none}, watchdog pid ${wd:-none}) but does not answer on http port $S_HTTP_PORT; run: $0 stop"
				sleep 0.1
			done
			msg "already running: $(addr_line)"
			exit 0
		fi
		rm -f -- "$CH_DIR/server.pid" "$CH_DIR/watchdog.pid" "$CH_DIR/stopping" "$CH_DIR/ready"
		S_TCP_PORT=$TCP_PORT S_HTTP_PORT=$HTTP_PORT S_DATA=$CH_DATA S_MAX_MEMORY=$MAX_MEMORY S_LOG_LEVEL=$LOG_LEVEL
		S_LIB=$LIB S_LAUNCHER=$LAUNCHER S_OWNER_PID=$OWNER_PID S_REMOVE_DIR_WITH_OWNER=$REMOVE_DIR_WITH_OWNER
		local p
		for p in "$S_TCP_PORT" "$S_HTTP_PORT"; do
			! port_busy "$p" || die "port $p on 127.0.0.1 is already in use (set CLICKHOUSE_TCP_PORT / CLICKHOUSE_HTTP_PORT)"
		done
		mkdir -p -- "$S_DATA"
		save_state
		# Its own session and no terminal input, so a Ctrl-C to the caller (or a
		# test runner) does not reach it; no inherited descriptors but std ones.
		setsid bash "$SELF" __watchdog "$CH_DIR" </dev/null >>"$CH_DIR/watchdog.log" 2>&1 8>&- &
		local n=$((START_TIMEOUT * 20))
		while :; do
			srv=$(server_pid) || true
			if [[ -n $srv ]] && ping_ok "$S_HTTP_PORT"; then
				: >"$CH_DIR/ready"
				break
			fi
			if ((n-- <= 0)); then
				show_logs
				: >"$CH_DIR/stopping"
				stop_server "$srv"
				wd=$(watchdog_pid) && kill -TERM "$wd" 2>/dev/null
				die "the server did not answer /ping within $START_TIMEOUT s"
			fi
			if [[ -z $srv ]] && ! watchdog_pid >/dev/null && ((n < START_TIMEOUT * 20 - 20)); then
				show_logs
				die "the server exited during start-up"
			fi
			sleep 0.05
		done
		msg "started in $(since "$t0") s: $(addr_line)"
	) 8>"$CH_DIR/.lock"
}

cmd_stop() {
	[[ -d $CH_DIR ]] || { msg "not running (no $CH_DIR)"; return 0; }
	local t0
	t0=$(now)
	(
		flock 8
		load_state
		local srv wd
		srv=$(server_pid) || true
		wd=$(watchdog_pid) || true
		if [[ -z $srv && -z $wd ]]; then
			rm -f -- "$CH_DIR/server.pid" "$CH_DIR/watchdog.pid" "$CH_DIR/stopping" "$CH_DIR/ready"
			msg "not running"
			exit 0
		fi
		: >"$CH_DIR/stopping"
		# The watchdog, when there is one, stops the server it runs (even one it
		# is just restarting); whatever is left is stopped here.
		if [[ -n $wd ]]; then
			kill -TERM "$wd" 2>/dev/null || true
			wait_gone "$wd" 20 || { msg "watchdog $wd did not exit: SIGKILL"; kill -KILL "$wd" 2>/dev/null || true; }
		fi
		srv=$(server_pid) || true
		[[ -z $srv ]] || stop_server "$srv" || die "could not stop server pid $srv"
		rm -f -- "$CH_DIR/server.pid" "$CH_DIR/watchdog.pid" "$CH_DIR/stopping" "$CH_DIR/ready"
		msg "stopped in $(since "$t0") s (data kept in $S_DATA)"
	) 8>"$CH_DIR/.lock"
}

cmd_status() {
	load_state
	local srv
	srv=$(server_pid) || true
	if ping_ok "$S_HTTP_PORT"; then
		if [[ -n $srv ]]; then
			printf 'running (pid %s, watchdog %s): %s\n' "$srv" "$(watchdog_pid || echo none)" "$(addr_line)"
		else
			printf 'something answers /ping on http port %s, but not the server of %s\n' "$S_HTTP_PORT" "$CH_DIR"
		fi
		return 0
	fi
	if [[ -n $srv ]]; then
		printf 'not answering: server pid %s runs but http port %s does not answer /ping\n' "$srv" "$S_HTTP_PORT"
	else
		printf 'not running (%s)\n' "$CH_DIR"
	fi
	return 1
}

cmd_env() {
	load_state
	ping_ok "$S_HTTP_PORT" || die "not running: start it first ($0 start)"
	printf 'export VIGIL_CLICKHOUSE_ADDR=127.0.0.1:%s\n' "$S_TCP_PORT"
	printf 'export VIGIL_CLICKHOUSE_HTTP_ADDR=127.0.0.1:%s\n' "$S_HTTP_PORT"
}

# --------------------------------------------------------------- cluster ---

CLUSTER_DIR=$(realpath -m -- "${CLICKHOUSE_CLUSTER_DIR:-$ROOT/.cache/clickhouse-cluster}")
CLUSTER_NAME=${CLICKHOUSE_CLUSTER_NAME:-vigil}
CLUSTER_TCP_PORTS=${CLICKHOUSE_CLUSTER_TCP_PORTS:-19101,19102}
CLUSTER_HTTP_PORTS=${CLICKHOUSE_CLUSTER_HTTP_PORTS:-18201,18202}

# shard_dirs: the cluster's instance dirs, in shard order.
shard_dirs() {
	local n=1
	while [[ -d $CLUSTER_DIR/shard$n ]]; do
		printf '%s\n' "$CLUSTER_DIR/shard$n"
		n=$((n + 1))
	done
}

# shard_config N TCP_PORTS...: the config.xml of shard N.
shard_config() {
	local n=$1 p
	shift
	printf '<clickhouse>\n  <remote_servers>\n    <%s>\n' "$CLUSTER_NAME"
	for p in "$@"; do
		printf '      <shard><replica><host>127.0.0.1</host><port>%s</port></replica></shard>\n' "$p"
	done
	printf '    </%s>\n  </remote_servers>\n' "$CLUSTER_NAME"
	printf '  <macros><shard>%s</shard><replica>shard%s</replica></macros>\n</clickhouse>\n' "$n" "$n"
}

cmd_start_cluster() {
	[[ $CLUSTER_NAME =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "cluster name $CLUSTER_NAME: use letters, digits and underscores"
	local tcp http
	IFS=, read -r -a tcp <<<"$CLUSTER_TCP_PORTS"
	IFS=, read -r -a http <<<"$CLUSTER_HTTP_PORTS"
	((${#tcp[@]} >= 1 && ${#tcp[@]} == ${#http[@]})) ||
		die "CLICKHOUSE_CLUSTER_TCP_PORTS ($CLUSTER_TCP_PORTS) and CLICKHOUSE_CLUSTER_HTTP_PORTS ($CLUSTER_HTTP_PORTS) need one port per shard each"
	local t0 n dir started=()
	t0=$(now)
	cmd_install
	mkdir -p -- "$CLUSTER_DIR"
	# Shards beyond the requested count are left from a larger cluster: their
	# dirs would make stop-cluster and env-cluster see them.
	[[ ! -d $CLUSTER_DIR/shard$((${#tcp[@]} + 1)) ]] ||
		die "$CLUSTER_DIR holds more shards than the ${#tcp[@]} requested: stop-cluster and remove it first"
	for ((n = 1; n <= ${#tcp[@]}; n++)); do
		dir=$CLUSTER_DIR/shard$n
		mkdir -p -- "$dir"
		shard_config "$n" "${tcp[@]}" >"$dir/config.xml.tmp"
		mv -f -- "$dir/config.xml.tmp" "$dir/config.xml"
		if ! CLICKHOUSE_DIR=$dir CLICKHOUSE_DATA=$dir/data \
			CLICKHOUSE_TCP_PORT=${tcp[n - 1]} CLICKHOUSE_HTTP_PORT=${http[n - 1]} bash "$SELF" start; then
			for dir in "${started[@]}"; do
				CLICKHOUSE_DIR=$dir bash "$SELF" stop || true
			done
			die "shard $n did not start"
		fi
		started+=("$dir")
	done
	printf '%s\n' "$CLUSTER_NAME" >"$CLUSTER_DIR/cluster.name"
	msg "cluster $CLUSTER_NAME of ${#tcp[@]} shards started in $(since "$t0") s: native ports ${tcp[*]}, http ports ${http[*]}"
}

cmd_stop_cluster() {
	local dir pids=() failed=0 p
	# In parallel: a clean stop takes about a second per server.
	while read -r dir; do
		CLICKHOUSE_DIR=$dir bash "$SELF" stop &
		pids+=($!)
	done < <(shard_dirs)
	((${#pids[@]})) || { msg "no cluster in $CLUSTER_DIR"; return 0; }
	for p in "${pids[@]}"; do wait "$p" || failed=1; done
	((!failed)) || die "some shards did not stop"
}

cmd_status_cluster() {
	local dir bad=0 any=0
	while read -r dir; do
		any=1
		printf '%s: ' "${dir##*/}"
		CLICKHOUSE_DIR=$dir bash "$SELF" status || bad=1
	done < <(shard_dirs)
	((any)) || { printf 'no cluster in %s\n' "$CLUSTER_DIR"; return 1; }
	return "$bad"
}

cmd_env_cluster() {
	local dir addrs=() name
	while read -r dir; do
		CH_DIR=$dir
		load_state
		ping_ok "$S_HTTP_PORT" || die "${dir##*/} is not running: start the cluster first ($0 start-cluster)"
		addrs+=("127.0.0.1:$S_TCP_PORT")
	done < <(shard_dirs)
	((${#addrs[@]})) || die "no cluster in $CLUSTER_DIR: start it first ($0 start-cluster)"
	name=$(<"$CLUSTER_DIR/cluster.name")
	local IFS=,
	printf 'export VIGIL_CLICKHOUSE_CLUSTER=%s\n' "$name"
	printf 'export VIGIL_CLICKHOUSE_SHARDS=%s\n' "${addrs[*]}"
}

usage() {
	sed -n '/^# Usage:/,/^# Never write/p' "$SELF" | sed '$d; s/^# \{0,1\}//' >&2
	exit 2
}

case ${1-} in
install) cmd_install ;;
start) cmd_start ;;
stop) cmd_stop ;;
restart) cmd_stop && cmd_start ;;
status) cmd_status ;;
env) cmd_env ;;
logs) load_state; show_logs "${2:-50}" 2>&1 ;;
start-cluster) cmd_start_cluster ;;
stop-cluster) cmd_stop_cluster ;;
status-cluster) cmd_status_cluster ;;
env-cluster) cmd_env_cluster ;;
__watchdog) CH_DIR=$2 cmd_watchdog ;;
*) usage ;;
esac

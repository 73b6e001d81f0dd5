#!/usr/bin/env bash
# services.sh makes PostgreSQL and Redis reachable on this machine for the tests and the demo.
#
# PgBouncer (transaction pooling) runs on 127.0.0.1:6432 in front of PostgreSQL for the tests
# that check the toolkit behind a transaction pooler (DEDUPE_TEST_PGBOUNCER_URL).
#
# Safe to run any number of times: it installs only what is missing (apt-get, as root), starts
# only what is stopped, and creates roles and databases only when absent. Progress goes to
# stderr; the environment to use goes to stdout as shell `export` lines, so both of these work:
#
#   scripts/services.sh               # start everything, print the URLs
#   eval "$(scripts/services.sh)"     # ... and use them in this shell
#
# Without apt-get (not Debian/Ubuntu, or not root) it says what to install, or to leave
# DEDUPE_TEST_DATABASE_URL / DEDUPE_TEST_REDIS_URL unset and let the integration harness start
# containers with testcontainers-go (needs a Docker engine).
set -euo pipefail

PG_ROLE=dedupe
PG_PASSWORD=dedupe
PG_TEST_DB=dedupe_test
PG_DEMO_DB=dedupe_demo
# The demo's payment provider (examples/payments) keeps its own database, as a real one would.
PG_PAYMENTS_DB=payments_demo
REDIS_PORT=6379
# Enough for parallel test packages that each open pools of 16-32 connections.
PG_MAX_CONNECTIONS=400

log() { echo "services: $*" >&2; }
die() { echo "services: $*" >&2; exit 1; }

have() { command -v "$1" >/dev/null 2>&1; }

apt_updated=
apt_install() {
	if ! have apt-get; then
		die "$1 is missing and this machine has no apt-get. Install $1 yourself, or leave
DEDUPE_TEST_DATABASE_URL and DEDUPE_TEST_REDIS_URL unset and run the integration tests
with a Docker engine: the harness then starts containers with testcontainers-go."
	fi
	[ "$(id -u)" = 0 ] || die "$1 is missing; installing it needs root (apt-get install $*)."
	if [ -z "$apt_updated" ]; then
		log "apt-get update"
		apt-get update -qq >&2
		apt_updated=1
	fi
	log "apt-get install $*"
	# policy-rc.d keeps the package from starting its own service; this script starts it.
	DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq --no-install-recommends "$@" >&2
}

as_postgres() { runuser -u postgres -- "$@"; }

psql_admin() { as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" "$@"; }

# --- PostgreSQL ----------------------------------------------------------------------------
have pg_lsclusters || apt_install postgresql postgresql-contrib
if [ -z "$(pg_lsclusters -h 2>/dev/null)" ]; then
	ver=$(ls /usr/lib/postgresql | sort -n | tail -1)
	log "creating PostgreSQL $ver cluster main"
	pg_createcluster "$ver" main >&2
fi
# The first cluster named main (Debian's default), else the first one listed.
read -r PG_VERSION PG_CLUSTER PG_PORT PG_STATUS _ < <(pg_lsclusters -h | awk '$2=="main"' | head -1)
if [ -z "${PG_VERSION:-}" ]; then
	read -r PG_VERSION PG_CLUSTER PG_PORT PG_STATUS _ < <(pg_lsclusters -h | head -1)
fi
if [ "$PG_STATUS" != online ]; then
	log "starting PostgreSQL $PG_VERSION/$PG_CLUSTER on port $PG_PORT"
	pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" start >&2
fi
for _ in $(seq 1 60); do
	pg_isready -q -h 127.0.0.1 -p "$PG_PORT" && break
	sleep 0.5
done
pg_isready -q -h 127.0.0.1 -p "$PG_PORT" || die "PostgreSQL did not become ready on port $PG_PORT"

if [ "$(psql_admin -tAc 'SHOW max_connections')" -lt "$PG_MAX_CONNECTIONS" ]; then
	log "raising max_connections to $PG_MAX_CONNECTIONS (restart)"
	psql_admin -c "ALTER SYSTEM SET max_connections = $PG_MAX_CONNECTIONS" >&2
	pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" restart >&2
	for _ in $(seq 1 60); do
		pg_isready -q -h 127.0.0.1 -p "$PG_PORT" && break
		sleep 0.5
	done
fi

# Time spent reading blocks, for the benchmarks' accounts of where a claim's time goes
# (pg_stat_database.blk_read_time); a reload suffices, and the overhead is a clock read per I/O.
if [ "$(psql_admin -tAc 'SHOW track_io_timing')" != on ]; then
	psql_admin -c "ALTER SYSTEM SET track_io_timing = on" -c "SELECT pg_reload_conf()" >/dev/null
fi

psql_admin <<SQL >&2
DO \$\$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_ROLE') THEN
		CREATE ROLE $PG_ROLE LOGIN PASSWORD '$PG_PASSWORD';
	END IF;
	-- The PgBouncer tests give every test its own database (search_path cannot be set per
	-- connection through a transaction pooler), so the test role creates databases.
	IF NOT (SELECT rolcreatedb FROM pg_roles WHERE rolname = '$PG_ROLE') THEN
		ALTER ROLE $PG_ROLE CREATEDB;
	END IF;
	-- make bench-volume runs CHECKPOINT between filling a generation and purging it: in
	-- production a rotation period (hours) of checkpoints separates the two.
	IF NOT pg_has_role('$PG_ROLE', 'pg_checkpoint', 'MEMBER') THEN
		GRANT pg_checkpoint TO $PG_ROLE;
	END IF;
END
\$\$;
SQL
for db in "$PG_TEST_DB" "$PG_DEMO_DB" "$PG_PAYMENTS_DB"; do
	if [ -z "$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'")" ]; then
		log "creating database $db"
		as_postgres createdb -p "$PG_PORT" -O "$PG_ROLE" "$db"
	fi
done

# make bench-volume -prewarm reads the big tables' indexes into memory before it measures:
# pg_prewarm, from the contrib modules that Debian's PostgreSQL server package ships.
psql_admin -d "$PG_TEST_DB" -c "SET client_min_messages = warning" -c "CREATE EXTENSION IF NOT EXISTS pg_prewarm" >&2

# --- PgBouncer -------------------------------------------------------------------------------
# Debian's pgbouncer in transaction pooling in front of the PostgreSQL above, with its own
# configuration (the package's /etc/pgbouncer and service are left alone). Every database name
# is forwarded (the "*" entry), so tests reach the per-test databases they create directly.
# search_path is deliberately not in ignore_startup_parameters: a client that sets it at
# start-up is refused instead of silently landing in the public schema.
PGB_PORT=6432
PGB_DIR=/var/lib/pgonce-pgbouncer
have pgbouncer || [ -x /usr/sbin/pgbouncer ] || apt_install pgbouncer
PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
mkdir -p "$PGB_DIR"
chown postgres: "$PGB_DIR"
chmod 700 "$PGB_DIR"
cat >"$PGB_DIR/userlist.txt.new" <<USERS
"$PG_ROLE" "$PG_PASSWORD"
USERS
cat >"$PGB_DIR/pgbouncer.ini.new" <<INI
[databases]
* = host=127.0.0.1 port=$PG_PORT

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGB_PORT
unix_socket_dir =
pool_mode = transaction
auth_type = scram-sha-256
auth_file = $PGB_DIR/userlist.txt
max_client_conn = 1000
default_pool_size = 40
ignore_startup_parameters = extra_float_digits
logfile = $PGB_DIR/pgbouncer.log
pidfile = $PGB_DIR/pgbouncer.pid
INI
# The pidfile's process, if it is still a pgbouncer (after a reboot the pid may be another's).
pgb_pid() {
	local pid
	pid=$(cat "$PGB_DIR/pgbouncer.pid" 2>/dev/null) || return 1
	[ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = pgbouncer ] && echo "$pid"
}
pgb_changed=
for f in userlist.txt pgbouncer.ini; do
	cmp -s "$PGB_DIR/$f.new" "$PGB_DIR/$f" || pgb_changed=1
	mv "$PGB_DIR/$f.new" "$PGB_DIR/$f"
	chown postgres: "$PGB_DIR/$f"
	chmod 600 "$PGB_DIR/$f"
done
if pid=$(pgb_pid) && [ -n "$pgb_changed" ]; then
	log "PgBouncer configuration changed; reloading (SIGHUP)"
	kill -HUP "$pid"
fi
if ! pgb_pid >/dev/null; then
	if pg_isready -q -h 127.0.0.1 -p "$PGB_PORT"; then
		die "port $PGB_PORT is taken by something other than our PgBouncer ($PGB_DIR); stop it (Debian's own service: service pgbouncer stop)"
	fi
	log "starting PgBouncer (transaction pooling) on port $PGB_PORT"
	rm -f "$PGB_DIR/pgbouncer.pid"
	as_postgres "$PGBOUNCER" -d "$PGB_DIR/pgbouncer.ini" >&2
fi
for _ in $(seq 1 50); do
	pg_isready -q -h 127.0.0.1 -p "$PGB_PORT" && break
	sleep 0.1
done
pg_isready -q -h 127.0.0.1 -p "$PGB_PORT" || die "PgBouncer did not become ready on port $PGB_PORT (see $PGB_DIR/pgbouncer.log)"

# --- Redis -----------------------------------------------------------------------------------
have redis-server || apt_install redis-server redis-tools
redis_up() { redis-cli -p "$1" ping 2>/dev/null | grep -q PONG; }
if ! redis_up "$REDIS_PORT"; then
	log "starting Redis on port $REDIS_PORT"
	mkdir -p /var/lib/dedupe-redis
	redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes \
		--save '' --appendonly no --dir /var/lib/dedupe-redis \
		--logfile /var/lib/dedupe-redis/redis-$REDIS_PORT.log >&2
	for _ in $(seq 1 50); do
		redis_up "$REDIS_PORT" && break
		sleep 0.1
	done
	redis_up "$REDIS_PORT" || die "Redis did not answer on port $REDIS_PORT"
fi

# --- Redis Cluster ---------------------------------------------------------------------------
# Three masters on loopback for the cluster tests (redisguard): cluster-enabled, no persistence.
# Each node keeps its cluster configuration (nodes.conf) under /var/lib/dedupe-redis, so nodes
# restarted after a reboot rejoin the cluster they formed; the cluster is created only when it
# is not formed yet, and rebuilt (its nodes are empty test servers) only when it is broken.
CLUSTER_PORTS=(7000 7001 7002)
cluster_addrs() { local p out=(); for p in "${CLUSTER_PORTS[@]}"; do out+=("127.0.0.1:$p"); done; echo "${out[@]}"; }
cluster_info() { redis-cli -p "$1" cluster info 2>/dev/null | tr -d '\r'; }
cluster_ok() {
	local p
	for p in "${CLUSTER_PORTS[@]}"; do
		cluster_info "$p" | grep -qx 'cluster_state:ok' || return 1
		[ "$(cluster_info "$p" | sed -n 's/^cluster_known_nodes://p')" = "${#CLUSTER_PORTS[@]}" ] || return 1
	done
}
cluster_fresh() {
	local p
	for p in "${CLUSTER_PORTS[@]}"; do
		[ "$(cluster_info "$p" | sed -n 's/^cluster_known_nodes://p')" = 1 ] || return 1
		[ "$(cluster_info "$p" | sed -n 's/^cluster_slots_assigned://p')" = 0 ] || return 1
	done
}
wait_cluster_ok() {
	for _ in $(seq 1 "$1"); do
		cluster_ok && return 0
		sleep 0.2
	done
	return 1
}
for port in "${CLUSTER_PORTS[@]}"; do
	redis_up "$port" && continue
	log "starting Redis Cluster node on port $port"
	dir=/var/lib/dedupe-redis/cluster-$port
	mkdir -p "$dir"
	redis-server --port "$port" --bind 127.0.0.1 --daemonize yes \
		--cluster-enabled yes --cluster-config-file "$dir/nodes.conf" --cluster-node-timeout 5000 \
		--save '' --appendonly no --dir "$dir" --logfile "$dir/redis.log" >&2
	for _ in $(seq 1 50); do
		redis_up "$port" && break
		sleep 0.1
	done
	redis_up "$port" || die "Redis Cluster node did not answer on port $port (see $dir/redis.log)"
done
if ! cluster_ok; then
	# Nodes that formed the cluster before and were just restarted need a moment to meet again.
	cluster_fresh || wait_cluster_ok 50 || {
		log "Redis Cluster on ${CLUSTER_PORTS[*]} is broken; resetting its (test-only) nodes"
		for port in "${CLUSTER_PORTS[@]}"; do
			redis-cli -p "$port" flushall >/dev/null
			redis-cli -p "$port" cluster reset hard >/dev/null
		done
	}
	if cluster_fresh; then
		log "creating Redis Cluster on $(cluster_addrs)"
		# shellcheck disable=SC2046
		redis-cli --cluster create $(cluster_addrs) --cluster-replicas 0 --cluster-yes >&2
	fi
	wait_cluster_ok 100 || die "Redis Cluster on ${CLUSTER_PORTS[*]} did not reach cluster_state:ok"
fi

log "ready: PostgreSQL $PG_VERSION on $PG_PORT, PgBouncer on $PGB_PORT, Redis on $REDIS_PORT, Redis Cluster on ${CLUSTER_PORTS[*]}"
cat <<ENV
export DEDUPE_TEST_DATABASE_URL='postgres://$PG_ROLE:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_TEST_DB?sslmode=disable'
export DEDUPE_TEST_PGBOUNCER_URL='postgres://$PG_ROLE:$PG_PASSWORD@127.0.0.1:$PGB_PORT/$PG_TEST_DB?sslmode=disable'
export DEDUPE_TEST_REDIS_URL='redis://127.0.0.1:$REDIS_PORT/0'
export DATABASE_URL='postgres://$PG_ROLE:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DEMO_DB?sslmode=disable'
export PAYMENTS_DATABASE_URL='postgres://$PG_ROLE:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_PAYMENTS_DB?sslmode=disable'
export REDIS_URL='redis://127.0.0.1:$REDIS_PORT/1'
export DEDUPE_TEST_REDIS_CLUSTER_ADDRS='$(cluster_addrs | tr ' ' ',')'
ENV

#!/usr/bin/env bash
# demo.sh runs the order service the way production would see it: two instances (two app
# servers) on one PostgreSQL (and Redis), a product with stock, and a burst of clients that
# send every request several times at once to both instances, then retry, then reuse keys
# with changed bodies. It prints what the clients saw and what PostgreSQL holds, and exits
# non-zero if any order was duplicated or the stock is off. `make demo` runs it.
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(scripts/services.sh)"
work=$(mktemp -d)
bin=$work/orders
echo "demo: building the order service" >&2
go build -o "$bin" ./examples/orders

sku="demo-$(date +%Y%m%d%H%M%S)"
stock=1000
ports=(18081 18082)
pids=()
stop() {
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop EXIT

"$bin" seed -sku "$sku" -name "Demo product" -stock "$stock"
targets=""
for port in "${ports[@]}"; do
	ADDR="127.0.0.1:$port" INSTANCE="orders-$port" "$bin" serve -report-interval 0 2>"$work/orders-$port.log" &
	pids+=($!)
	targets+="${targets:+,}http://127.0.0.1:$port"
done
guard=no
[ -n "${REDIS_URL:-}" ] && guard=yes
echo "demo: two instances on ${ports[*]} (Redis guard in front: $guard), product $sku with $stock units; sending the burst" >&2

status=0
"$bin" burst -targets "$targets" -sku "$sku" -stock "$stock" -keys 100 -sends 5 -mismatches 5 || status=$?

echo
echo "what each instance logged (outcome of each deduplicated request):"
for port in "${ports[@]}"; do
	printf '  orders-%s:' "$port"
	for outcome in first replayed in_progress mismatch rolled_back error; do
		n=$(grep -c "\"outcome\":\"$outcome\"" "$work/orders-$port.log" || true)
		printf ' %s=%s' "$outcome" "$n"
	done
	echo
done
exit "$status"

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
stop
pids=()
[ "$status" -eq 0 ] || exit "$status"

# --- Part 2: the paid checkout -----------------------------------------------------------------
# POST /orders as a phased request: reserve stock, charge a payment provider (its own service
# and database, with faults switched on), confirm and enqueue a notification that River
# delivers to a receiver deduplicating on the incoming key. One orders instance is killed with
# SIGKILL a third of the way in and restarted; its requests are taken over once their lease
# runs out.
echo
echo "demo: part 2, the paid checkout" >&2
paybin=$work/payments
go build -o "$paybin" ./examples/payments
pay_port=18090
DATABASE_URL="$PAYMENTS_DATABASE_URL" "$paybin" migrate
PAY_FAIL_BEFORE_CHARGE=0.1 PAY_DROP_AFTER_COMMIT=0.1 PAY_SLOW=0.05 PAY_SLOW_DELAY=3s PAY_DECLINE=0.05 \
	PAY_NOTIFY_FAIL=0.1 DATABASE_URL="$PAYMENTS_DATABASE_URL" ADDR="127.0.0.1:$pay_port" \
	"$paybin" serve 2>"$work/payments.log" &
pids+=($!)

sku2="paid-$(date +%Y%m%d%H%M%S)"
"$bin" seed -sku "$sku2" -name "Paid product" -stock "$stock"
ports2=(18083 18084)
# start_orders PORT: one paid-checkout instance in the background, its pid in a file (it may be
# restarted by the kill below, from another process).
cat >"$work/start-orders.sh" <<START
#!/usr/bin/env bash
port=\$1
ADDR="127.0.0.1:\$port" INSTANCE="orders-\$port" PAYMENTS_URL="http://127.0.0.1:$pay_port" \\
	NOTIFY_URL="http://127.0.0.1:$pay_port/notifications" REDIS_URL= \\
	"$bin" serve -report-interval 0 -lease 2s 2>>"$work/orders-\$port.log" &
echo \$! >"$work/orders-\$port.pid"
START
chmod +x "$work/start-orders.sh"
stop2() {
	for f in "$work"/orders-*.pid; do [ -f "$f" ] && kill -TERM "$(cat "$f")" 2>/dev/null || true; done
	stop
}
trap stop2 EXIT
targets2=""
for port in "${ports2[@]}"; do
	"$work/start-orders.sh" "$port"
	targets2+="${targets2:+,}http://127.0.0.1:$port"
done
victim=${ports2[1]}
during="kill -KILL \$(cat $work/orders-$victim.pid); echo 'demo: killed orders-$victim with SIGKILL; restarting it' >&2; sleep 0.5; $work/start-orders.sh $victim"
echo "demo: provider on $pay_port (faults on: 10% 5xx before charging, 10% charge then drop the answer, 5% slow, 5% declined, 10% of notifications 5xx); orders on ${ports2[*]}" >&2
status=0
"$bin" checkout -targets "$targets2" -sku "$sku2" -stock "$stock" -keys 100 -sends 3 -decline-every 10 -during "$during" || status=$?
echo
echo "faults the provider fired (GET /faults): $(curl -fsS "http://127.0.0.1:$pay_port/faults" || echo unavailable)"
exit "$status"

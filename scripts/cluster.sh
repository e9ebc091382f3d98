#!/usr/bin/env bash
# The scale-out shape on loopback: a 3-node NATS cluster with JetStream, one
# `aerie control --nats` on SQLite and two `aerie gateway`s. Prints the
# endpoints and how to sign up, then runs until Ctrl-C (or SIGTERM, or
# CLUSTER_LIFETIME seconds), and stops everything it started.
#
# Environment (all optional):
#   AERIE_BIN         the aerie binary (default: target/debug/aerie)
#   NATS_SERVER       nats-server ≥ 2.10 (default: the one `make test-deps` installs)
#   PORT_BASE         the 16 ports used are PORT_BASE..PORT_BASE+15 (default: the
#                     usual ones: NATS 4222-4224, control 8080, MQTT 1883/1884, ...)
#   CLUSTER_DIR       where state and logs go (default: a new temp dir, removed at the end)
#   CLUSTER_LIFETIME  stop by itself after this many seconds
set -euo pipefail

NATS_VERSION=2.15.1
AERIE_BIN=${AERIE_BIN:-target/debug/aerie}
NATS_SERVER=${NATS_SERVER:-$HOME/.cache/aerie-tools/nats-$NATS_VERSION/bin/nats-server}
for bin in "$AERIE_BIN" "$NATS_SERVER"; do
    [ -x "$bin" ] || { echo "cluster: $bin is missing (make test-deps; cargo build -p aerie)" >&2; exit 1; }
done
command -v curl >/dev/null || { echo "cluster: curl is needed" >&2; exit 1; }

if [ -n "${PORT_BASE:-}" ]; then
    port() { echo $((PORT_BASE + $1)); }
else
    port() {
        local usual=(4222 4223 4224 6222 6223 6224 8222 8223 8224 8080 1883 8083 8081 1884 8084)
        echo "${usual[$1]}"
    }
fi
NATS_PORTS=("$(port 0)" "$(port 1)" "$(port 2)")
ROUTE_PORTS=("$(port 3)" "$(port 4)" "$(port 5)")
MONITOR_PORTS=("$(port 6)" "$(port 7)" "$(port 8)")
CONTROL_HTTP=127.0.0.1:$(port 9)
GW_A_MQTT=127.0.0.1:$(port 10) GW_A_WS=127.0.0.1:$(port 11) GW_A_HTTP=127.0.0.1:$(port 12)
GW_B_MQTT=127.0.0.1:$(port 13) GW_B_WS=127.0.0.1:$(port 14)
# Gateway B's HTTP port follows the others when PORT_BASE is set.
if [ -n "${PORT_BASE:-}" ]; then GW_B_HTTP=127.0.0.1:$(port 15); else GW_B_HTTP=127.0.0.1:8082; fi

OWN_DIR=
if [ -z "${CLUSTER_DIR:-}" ]; then
    CLUSTER_DIR=$(mktemp -d -t aerie-cluster-XXXXXX)
    OWN_DIR=1
fi
mkdir -p "$CLUSTER_DIR"

PIDS=()
# Stops everything, then exits with $1.
stop() {
    trap - INT TERM EXIT
    echo
    echo "cluster: stopping"
    # Gateways and the control plane first (they flush usage to NATS), then NATS.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill -TERM "${PIDS[i]}" 2>/dev/null || true
        wait "${PIDS[i]}" 2>/dev/null || true
    done
    [ -n "$OWN_DIR" ] && rm -rf "$CLUSTER_DIR"
    echo "cluster: stopped"
    exit "$1"
}
trap 'stop 0' INT TERM
trap 'stop $?' EXIT

# Waits until `curl URL` answers 200, for at most $2 seconds, while process
# $4 runs; $3 names it (and its log).
wait_ok() {
    local deadline=$((SECONDS + $2))
    until curl -fs -o /dev/null "$1"; do
        if ((SECONDS > deadline)) || ! kill -0 "$4" 2>/dev/null; then
            echo "cluster: $3 did not become ready; its log: $CLUSTER_DIR/$3.log" >&2
            tail -n 20 "$CLUSTER_DIR/$3.log" >&2 || true
            exit 1
        fi
        sleep 0.2
    done
}

routes=$(printf 'nats://127.0.0.1:%s,' "${ROUTE_PORTS[@]}")
for i in 0 1 2; do
    "$NATS_SERVER" -js -a 127.0.0.1 -n "nats-$i" -p "${NATS_PORTS[i]}" -m "${MONITOR_PORTS[i]}" \
        -sd "$CLUSTER_DIR/nats-$i" --cluster_name aerie \
        --cluster "nats://127.0.0.1:${ROUTE_PORTS[i]}" --routes "${routes%,}" \
        >"$CLUSTER_DIR/nats-$i.log" 2>&1 &
    PIDS+=($!)
done
for i in 0 1 2; do
    # JetStream is current once the cluster has elected its meta leader.
    wait_ok "http://127.0.0.1:${MONITOR_PORTS[i]}/healthz" 60 "nats-$i" "${PIDS[i]}"
done
NATS_URLS=$(printf 'nats://127.0.0.1:%s,' "${NATS_PORTS[@]}")
NATS_URLS=${NATS_URLS%,}

SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
ADMIN_TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
AERIE_SECRET_KEY=$SECRET AERIE_ADMIN_TOKEN=$ADMIN_TOKEN "$AERIE_BIN" control \
    --http "$CONTROL_HTTP" --database-url "sqlite://$CLUSTER_DIR/control.db?mode=rwc" \
    --nats "$NATS_URLS" >"$CLUSTER_DIR/control.log" 2>&1 &
PIDS+=($!)
wait_ok "http://$CONTROL_HTTP/readyz" 60 control "${PIDS[3]}"

"$AERIE_BIN" gateway --node-id gw-a --nats "$NATS_URLS" \
    --mqtt "$GW_A_MQTT" --ws "$GW_A_WS" --http "$GW_A_HTTP" >"$CLUSTER_DIR/gateway-a.log" 2>&1 &
PIDS+=($!)
"$AERIE_BIN" gateway --node-id gw-b --nats "$NATS_URLS" \
    --mqtt "$GW_B_MQTT" --ws "$GW_B_WS" --http "$GW_B_HTTP" >"$CLUSTER_DIR/gateway-b.log" 2>&1 &
PIDS+=($!)
wait_ok "http://$GW_A_HTTP/readyz" 60 gateway-a "${PIDS[4]}"
wait_ok "http://$GW_B_HTTP/readyz" 60 gateway-b "${PIDS[5]}"

cat <<EOF
cluster: ready (state and logs in $CLUSTER_DIR)
  NATS (JetStream, 3 nodes)  $NATS_URLS   monitoring: $(printf 'http://127.0.0.1:%s ' "${MONITOR_PORTS[@]}")
  control plane              http://$CONTROL_HTTP   (REST API v1, console; admin token: $ADMIN_TOKEN)
  gateway gw-a               mqtt://$GW_A_MQTT   ws://$GW_A_WS/mqtt   http://$GW_A_HTTP/readyz
  gateway gw-b               mqtt://$GW_B_MQTT   ws://$GW_B_WS/mqtt   http://$GW_B_HTTP/readyz

Sign up, make a tenant and an API key, mint a device token (curl and jq):
  API=http://$CONTROL_HTTP
  TOKEN=\$(curl -s -X POST \$API/v1/accounts -H 'content-type: application/json' \\
    -d '{"email":"maker@example.com","password":"correct horse battery"}' | jq -r .token)
  TID=\$(curl -s -X POST \$API/v1/tenants -H "authorization: Bearer \$TOKEN" \\
    -H 'content-type: application/json' -d '{"name":"greenhouse"}' | jq -r .id)
  KEY=\$(curl -s -X POST \$API/v1/tenants/\$TID/api-keys -H "authorization: Bearer \$TOKEN" \\
    -H 'content-type: application/json' -d '{"name":"devices"}' | jq -r .key)
  DEVICE_TOKEN=\$(curl -s -X POST \$API/v1/tenants/\$TID/tokens -H "authorization: Bearer \$KEY" \\
    -H 'content-type: application/json' -d '{"client_id":"sensor-1"}' | jq -r .token)
  mosquitto_pub -h ${GW_A_MQTT%:*} -p ${GW_A_MQTT##*:} -V mqttv5 -i sensor-1 -u sensor-1 -P "\$DEVICE_TOKEN" -t greenhouse/t -m 21.5

Ctrl-C stops everything.
EOF

if [ -n "${CLUSTER_LIFETIME:-}" ]; then
    sleep "$CLUSTER_LIFETIME" &
    PIDS=("$!" "${PIDS[@]}")
    wait "${PIDS[0]}" || true
else
    # Until a signal (the trap stops everything) or a process dies.
    wait -n "${PIDS[@]}" || true
    echo "cluster: a process exited; see the logs in $CLUSTER_DIR" >&2
fi

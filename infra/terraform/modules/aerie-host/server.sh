#!/bin/sh
# `aerie serve` on this host, for main.tf's provisioners: `server.sh start`
# starts it in the background and waits until /readyz answers 200;
# `server.sh stop` stops the server of a pid file. Every setting comes in the
# environment (the server reads its AERIE_* variables itself; AERIE_HOST_*
# are this script's).
set -eu

# Alive: the pid exists and is no zombie (an exited server whose parent, maybe
# a PID 1 that reaps nothing, has not collected it).
alive() {
    state=$(ps -p "$1" -o stat= 2>/dev/null) || return 1
    case "$state" in Z*) return 1 ;; esac
}

# The server runs in a session of its own with no stream shared with
# Terraform, which would otherwise wait for it to end; a start that does not
# become ready is stopped again, so a failed apply leaves no process behind.
start() {
    : "${AERIE_HOST_BINARY:?}" "${AERIE_HOST_PID_FILE:?}" "${AERIE_HOST_LOG_FILE:?}"
    : "${AERIE_HOST_READYZ:?}" "${AERIE_HOST_TIMEOUT:?}" "${AERIE_DATA_DIR:?}"

    if [ ! -x "$AERIE_HOST_BINARY" ]; then
        echo "aerie-host: $AERIE_HOST_BINARY is not an executable (variable binary)" >&2
        exit 1
    fi
    mkdir -p "$AERIE_DATA_DIR"
    if [ -f "$AERIE_HOST_PID_FILE" ] && alive "$(cat "$AERIE_HOST_PID_FILE")"; then
        echo "aerie-host: a server from $AERIE_HOST_PID_FILE is running already (pid $(cat "$AERIE_HOST_PID_FILE"))" >&2
        exit 1
    fi

    # Without job control the background child is no process group leader, so
    # setsid runs the server itself (no fork): $! is the server's pid.
    if command -v setsid >/dev/null 2>&1; then
        setsid "$AERIE_HOST_BINARY" serve </dev/null >>"$AERIE_HOST_LOG_FILE" 2>&1 &
    else
        nohup "$AERIE_HOST_BINARY" serve </dev/null >>"$AERIE_HOST_LOG_FILE" 2>&1 &
    fi
    pid=$!
    echo "$pid" >"$AERIE_HOST_PID_FILE"

    fail() {
        echo "aerie-host: $1; the end of $AERIE_HOST_LOG_FILE:" >&2
        tail -n 20 "$AERIE_HOST_LOG_FILE" >&2 || true
        kill "$pid" 2>/dev/null || true
        rm -f "$AERIE_HOST_PID_FILE"
        exit 1
    }

    # Five probes a second until the timeout.
    tries=$((AERIE_HOST_TIMEOUT * 5))
    while [ "$tries" -gt 0 ]; do
        if ! alive "$pid"; then
            fail "aerie serve exited at start"
        fi
        if curl -fsS -o /dev/null --max-time 2 "$AERIE_HOST_READYZ" 2>/dev/null; then
            echo "aerie-host: aerie serve is ready (pid $pid, $AERIE_HOST_READYZ)"
            exit 0
        fi
        tries=$((tries - 1))
        sleep 0.2
    done
    fail "aerie serve was not ready within $AERIE_HOST_TIMEOUT s ($AERIE_HOST_READYZ)"
}

# SIGTERM, which lets the server close connections and make its store
# durable, then SIGKILL if it is still there after 30 s. The pid must still be
# an `aerie serve` (a pid reused by another process is left alone). No pid
# file: nothing to stop.
stop() {
    : "${AERIE_HOST_PID_FILE:?}"
    if [ ! -f "$AERIE_HOST_PID_FILE" ]; then
        echo "aerie-host: no $AERIE_HOST_PID_FILE, nothing to stop"
        exit 0
    fi
    pid=$(cat "$AERIE_HOST_PID_FILE")
    case "$(ps -p "$pid" -o args= 2>/dev/null || true)" in
        *aerie*" serve"*) ;;
        *)
            echo "aerie-host: pid $pid is not running aerie serve, nothing to stop"
            rm -f "$AERIE_HOST_PID_FILE"
            exit 0
            ;;
    esac

    kill -TERM "$pid" 2>/dev/null || true
    tries=150
    while alive "$pid" && [ "$tries" -gt 0 ]; do
        tries=$((tries - 1))
        sleep 0.2
    done
    if alive "$pid"; then
        echo "aerie-host: pid $pid did not stop within 30 s of SIGTERM: SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$AERIE_HOST_PID_FILE"
    echo "aerie-host: aerie serve (pid $pid) stopped"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac

# scripts/lib.sh: shell helpers shared by test.sh, demo.sh and bench/run.
# Source it; it defines functions only.

# start_epmd PORT: starts a private epmd on 127.0.0.1 at the first port
# from PORT up where one starts and stays up (another run may hold a
# port), and exports ERL_EPMD_PORT and ERL_EPMD_ADDRESS so every erl and
# tether_cnode started afterwards uses it. Sets EPMD_PID (stop it with
# stop_epmd). Returns non-zero if none could start.
start_epmd() {
    local port=$1 try
    EPMD_PID=
    for try in $(seq 20); do
        epmd -address 127.0.0.1 -port "$port" &
        EPMD_PID=$!
        for try in $(seq 10); do
            kill -0 "$EPMD_PID" 2>/dev/null || break
            epmd -port "$port" -names >/dev/null 2>&1 && break
            sleep 0.2
        done
        sleep 0.2
        if kill -0 "$EPMD_PID" 2>/dev/null; then
            export ERL_EPMD_PORT=$port ERL_EPMD_ADDRESS=127.0.0.1
            return 0
        fi
        EPMD_PID=
        port=$((port + 1))
    done
    echo "could not start epmd near port $1" >&2
    return 1
}

# stop_epmd: stops the epmd start_epmd started, by pid.
stop_epmd() {
    if [ -n "${EPMD_PID:-}" ]; then
        kill "$EPMD_PID" 2>/dev/null || true
        wait "$EPMD_PID" 2>/dev/null || true
        EPMD_PID=
    fi
    return 0
}

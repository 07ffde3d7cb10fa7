#!/usr/bin/env bash
# stop.sh: stops setup.sh's nginx, and wan.sh's toxiproxy and nginx if they are up, by pid file.
set -euo pipefail
# shellcheck source=scripts/bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
"$BENCH/wan.sh" down
if ! nginx_running; then log "nginx is not running"; exit 0; fi
pid=$(cat "$NGINX_PID")
kill -QUIT "$pid"
for _ in $(seq 100); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2> /dev/null; then kill -TERM "$pid"; fi
rm -f "$NGINX_PID"
log "nginx (pid $pid) stopped"

#!/usr/bin/env bash
# mirror-bench.sh: what keeping a mirror costs, on the loopback benchmark's 10,000 small
# files (scripts/bench/setup.sh must have run). For each step: wall time, requests and response
# bytes as a logging nginx saw them (a second nginx on the same files, with an access log), and
# haul's manifest statuses:
#   1. full download of small.txt into a fresh dir
#   2. --update over the finished mirror where nothing changed (10,000 conditional GETs, 304s)
#   3. --dry-run --checksums SHA256SUMS over it (no request; bounded by hashing)
#   4. -r over the same tree as an nginx autoindex (when haul has -r), against wget -r -np and
#      rclone copy with the http backend (those that are installed)
# Env: HAUL (binary; default: built from this checkout), RUNS (3, medians), C (16), PORT (29180),
#      BENCH_DIR.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/bench/lib.sh
source "$ROOT/scripts/bench/lib.sh"
RUNS=${RUNS:-3}
C=${C:-16}
PORT=${PORT:-29180}
[[ -d $WWW/small ]] || die "no dataset in $WWW: run scripts/bench/setup.sh"
if [[ -z ${HAUL:-} ]]; then
  HAUL=$(mktemp -d)/haul
  (cd "$ROOT" && go build -o "$HAUL" ./cmd/haul)
fi
W=$BENCH_DIR/mirror-bench
mkdir -p "$W"
chattr +T "$W" 2>/dev/null || true
LOG=$W/access.log
cat > "$W/nginx.conf" <<EOF
worker_processes 1;
pid $W/nginx.pid;
error_log $W/error.log;
events { worker_connections 1024; }
http {
  log_format m '\$status \$body_bytes_sent \$request_uri';
  access_log $LOG m;
  sendfile on; tcp_nopush on; keepalive_requests 100000; keepalive_timeout 60;
  client_body_temp_path $W/tmp; proxy_temp_path $W/tmp; fastcgi_temp_path $W/tmp;
  uwsgi_temp_path $W/tmp; scgi_temp_path $W/tmp;
  server { listen 127.0.0.1:$PORT; root $WWW; autoindex on; }
}
EOF
mkdir -p "$W/tmp"
nginx -c "$W/nginx.conf"
trap 'kill "$(cat "$W/nginx.pid")" 2>/dev/null || true' EXIT
LIST=$W/small.txt
sed "s#http://127.0.0.1:$BENCH_PORT/#http://127.0.0.1:$PORT/#" "$LISTS/small.txt" > "$LIST"
grep ' small/' "$WWW/SHA256SUMS" > "$W/SHA256SUMS"

# step NAME CMD...: runs CMD with the access log emptied; prints wall, requests, bytes, statuses.
step() {
  local name=$1; shift
  : > "$LOG"; kill -USR1 "$(cat "$W/nginx.pid")"; sleep 0.2
  local t0 t1
  t0=$(now)
  "$@" > "$W/out.txt" 2> "$W/err.txt" || true
  t1=$(now)
  sleep 0.3 # nginx writes its log lines after the responses
  local req bytes codes
  req=$(wc -l < "$LOG")
  bytes=$(awk '{s+=$2} END{print s+0}' "$LOG")
  codes=$(awk '{c[$1]++} END{for (k in c) printf "%s:%d ", k, c[k]}' "$LOG")
  printf '%-34s %8.2f s %7d req %12d B  %s %s\n' "$name" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')" \
    "$req" "$bytes" "$codes" "$(tail -1 "$W/err.txt")"
}

for ((i = 1; i <= RUNS; i++)); do
  out=$(mktemp -d "$W/run-XXXX")
  step "full download" "$HAUL" -i "$LIST" -d "$out" -j "$C"
  step "--update, nothing changed" "$HAUL" -N -i "$LIST" -d "$out" -j "$C"
  step "plain re-run (skip from disk)" "$HAUL" -i "$LIST" -d "$out" -j "$C"
  step "--dry-run --checksums" "$HAUL" --dry-run --checksums "$W/SHA256SUMS" -i "$LIST" -d "$out"
  if "$HAUL" --help 2>&1 | grep -q -- '--recursive'; then
    r=$(mktemp -d "$W/r-XXXX")
    step "haul -r" "$HAUL" -r -d "$r" -j "$C" "http://127.0.0.1:$PORT/small/"
    step "haul -r --update (nothing changed)" "$HAUL" -r -N -d "$r" -j "$C" "http://127.0.0.1:$PORT/small/"
  fi
  if command -v wget >/dev/null; then
    r=$(mktemp -d "$W/w-XXXX")
    step "wget -r -np" wget -q -r -np -nH -R 'index.html*' -P "$r" "http://127.0.0.1:$PORT/small/"
  fi
  if command -v rclone >/dev/null; then
    r=$(mktemp -d "$W/rc-XXXX")
    step "rclone copy (http backend)" rclone copy --transfers "$C" --http-url "http://127.0.0.1:$PORT" :http:small "$r"
  fi
done
# Deleted at the end only: creating files on this ext4 is 10x slower for minutes after a delete.
rm -rf "$W"/run-* "$W"/r-* "$W"/w-* "$W"/rc-*

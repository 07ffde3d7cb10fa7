#!/usr/bin/env bash
# proto.sh [C=16]: which protocol each tool really speaks over HTTPS (not timed). Each tool fetches
# the proto-tls list (100 small and 4 medium files, verified as loopback.sh does) once, through
# the port whose nginx logs every request; the log lines of that run give the HTTP version, the
# TLS version and cipher, the TCP connections and how many of them resumed a TLS session.
# Env: HAUL, BENCH_TOOLS.
set -euo pipefail
# shellcheck source=scripts/bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
C=${1:-16}
PLOG=$BENCH_DIR/nginx-proto.log
nginx_running || die "nginx is not running: run scripts/bench/setup.sh"
touch "$PLOG"
read -r -a want <<< "${BENCH_TOOLS:-aria2c curl wget2 wget xargs-curl py-aiohttp py-threads haul}"
printf '%-11s %-4s %-9s %-8s %-24s %5s %5s %7s  %s\n' tool ok http tls cipher reqs conns resumed user-agent
for t in "${want[@]}"; do
  n0=$(wc -l < "$PLOG")
  out=$(BENCH_TOOLS=$t BENCH_RUNS=1 "$BENCH/loopback.sh" proto-tls "$C" 2> /dev/null) || true
  ok=$(awk -v t="$t" '$1 == t {print $2}' <<< "$out" | tail -n 1)
  if [[ -z $ok ]]; then printf '%-11s %s\n' "$t" "not run"; continue; fi
  # log line: PROTOCOL TLS CIPHER reused=r|. conn=N "USER-AGENT"
  tail -n +"$((n0 + 1))" "$PLOG" | awk -v t="$t" -v ok="$ok" '
    { http[$1]; tls[$2]; ciph[$3]; conn[$5]; n++; if ($4 == "reused=r") r[$5]
      ua = $0; sub(/^[^"]*"/, "", ua); sub(/"$/, "", ua) }
    function keys(a,   k, s) { s = ""; for (k in a) s = s (s == "" ? "" : ",") k; return s }
    function count(a,   k, c) { c = 0; for (k in a) c++; return c }
    END { printf "%-11s %-4s %-9s %-8s %-24s %5d %5d %7d  %s\n", t, ok, keys(http), keys(tls), keys(ciph), n,
          count(conn), count(r), ua }'
done

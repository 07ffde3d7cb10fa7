#!/usr/bin/env bash
# loopback.sh WORKLOAD [C=16]: haul and its peers fetching one workload's list from setup.sh's nginx
# on 127.0.0.1, C downloads at a time, BENCH_RUNS rounds, verified, medians in a table.
#   small (10,000 x 4 KiB), medium (200 x 1 MiB), large (4 x 256 MiB), huge (1 x 2 GiB), each
#   also as W-tls: the same files over HTTPS (HTTP/2 where the tool offers it); proto-tls: 104
#   files through the logging port (proto.sh).
# Tools: aria2c (-x/-s min(C,16) connections per file), aria2c-x1 (large, huge: one per file),
# curl --parallel, wget2, wget (one at a time), xargs -P C curl, pyfetch.py aiohttp and threads,
# rclone copy (its http backend, the list's paths), haul (-j C --layout tree). On *-tls every tool verifies the server against the bench CA.
# Env: HAUL (the haul binary), BENCH_RUNS (3), BENCH_TOOLS (a subset, in order), BENCH_TIMEOUT
#      (600 s a run; wget on huge: WGET_HUGE_TIMEOUT, 120 s), ARIA2_SPLIT (aria2c -x/-s),
#      HAUL_OPTS (more haul flags), HAUL_<NAME> (a second binary run as tool haul-<name>).
set -euo pipefail
# shellcheck source=scripts/bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

W=${1:?usage: loopback.sh small|medium|large|huge[-tls] [C]}
C=${2:-16}
R=${BENCH_RUNS:-3}
TO=${BENCH_TIMEOUT:-600}
case $W in
  small|medium|large|huge) TLS=0 ;;
  small-tls|medium-tls|large-tls|huge-tls|proto-tls) TLS=1 ;;
  *) die "unknown workload $W (small medium large huge, each also -tls)" ;;
esac
[[ $C =~ ^[1-9][0-9]*$ ]] || die "bad concurrency $C"
[[ $R =~ ^[1-9][0-9]*$ ]] || die "bad BENCH_RUNS $R"
nginx_running || die "nginx is not running: run scripts/bench/setup.sh"
L=$W
[[ -s $LISTS/$L.txt && -s $LISTS/$L.sha ]] || die "no list $LISTS/$L.txt: run scripts/bench/setup.sh"
N=$(wc -l < "$LISTS/$L.txt")
BYTES=$(cat "$LISTS/$L.bytes")
ARIA2_X=${ARIA2_SPLIT:-$((C < 16 ? C : 16))}   # aria2c's maximum is 16
WGET2_NH=1 PY_TREE=0

FIRST=$(head -n 1 "$LISTS/$L.txt")
RCLONE_BASE=${FIRST%/"$(head -n 1 "$LISTS/$L.paths")"}
RCLONE_OPTS=--http-no-head   # the server's listing is not read: no HEAD per file either

tools=(aria2c curl wget2 wget xargs-curl py-aiohttp py-threads rclone haul)
[[ ${W%-tls} == large || ${W%-tls} == huge ]] && tools=(aria2c aria2c-x1 "${tools[@]:1}")
pick_tools "${tools[@]}"

srv_ticks() { workers_ticks "$NGINX_PID"; }
# wget fetches one file at a time: on huge it gets less time, so that it does not hold up the rest
[[ ${W%-tls} == huge ]] && TIMEOUTS[wget]=${WGET_HUGE_TIMEOUT:-120}

TAG=$W-c$C-$(date +%Y%m%dT%H%M%S)
trap cleanup_run EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
echo "== loopback: workload=$W files=$N bytes=$BYTES concurrency=$C runs=$R  $(date '+%F %T')  load: $(cut -d' ' -f1-3 /proc/loadavg)"
show_cmds
run_all
echo
table "$N" "$BYTES"
raw_line "srv% = nginx worker CPU / wall"

#!/usr/bin/env bash
# limits.sh [--no-tls | --tls-only]: what this machine can do at best, for the loopback workloads
# to be read against (setup.sh's nginx must run). Each row: median and best of LIMITS_RUNS (3).
#   (a) loopback HTTP: curl -o /dev/null of the 2 GiB file, 1 and 4 at once (MB/s)
#   (b) disk write: dd 4 GiB, with fdatasync and into the page cache (MB/s)
#   (c) small-file floor: create+write+close 10,000 x 4 KiB (mkfiles/), 1, 2 and 16 workers (files/s)
#   (d) nginx's request rate on the small files: wrk keep-alive, 16 and 64 connections (req/s)
#   (e) loopback HTTPS: curl of the 2 GiB file over --http1.1 and --http2, 1 and 4 at once (MB/s)
#   (f) nginx's TLS request rate: wrk over HTTPS (keep-alive, 16/64 connections, and Connection:
#       close: a handshake a request), h2load over HTTP/2 (1 connection x 100 streams, 16 x 10)
# The nginx CPU% beside a rate says whether the server was the ceiling (100 = one core).
# Env: LIMITS_RUNS (3), WRK_SECONDS (10), WRK_THREADS (2), LIMITS_DD_MIB (4096: dd's size).
set -euo pipefail
# shellcheck source=scripts/bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PLAIN=1 TLSPART=1
case ${1:-} in
  "") ;;
  --no-tls) TLSPART=0 ;;
  --tls-only) PLAIN=0 ;;
  *) die "usage: limits.sh [--no-tls | --tls-only]" ;;
esac
RUNS=${LIMITS_RUNS:-3}
SECS=${WRK_SECONDS:-10}
THREADS=${WRK_THREADS:-2}
DD_MIB=${LIMITS_DD_MIB:-4096}
nginx_running || die "nginx is not running: run scripts/bench/setup.sh"
SCRATCH=$BENCH_DIR/limits
rm -rf "$SCRATCH"
fresh_parent "$SCRATCH"
trap 'rm -rf "$SCRATCH"' EXIT
HUGE=$(head -n 1 "$LISTS/huge.txt")
HUGE_TLS=$(head -n 1 "$LISTS/huge-tls.txt")
HUGE_BYTES=$(cat "$LISTS/huge.bytes")

row() { printf '%-44s %10s %10s %10s   %s\n' "$@"; }
# report LABEL UNIT NOTES VALUES...: one row (median, best, every value, notes)
report() {
  local label=$1 unit=$2 notes=$3; shift 3
  row "$label" "$(printf '%s\n' "$@" | median | cut -d. -f1)" "$(printf '%s\n' "$@" | sort -g | tail -n 1)" "$unit" "$* $notes"
}
mbs() { awk -v b="$1" -v s="$2" 'BEGIN{printf "%.0f", b / 1e6 / s}'; }
pct() { awk -v t="$1" -v h="$CLK_TCK" -v s="$2" 'BEGIN{printf "%.0f", 100 * t / h / s}'; }
srv_ticks() { workers_ticks "$NGINX_PID"; }

# parallel_curl K URL CURL_OPTS...: K curls of URL to /dev/null at once; sets V (MB/s), S (nginx CPU%),
# U (the curls' CPU%)
parallel_curl() {
  local k=$1 url=$2 i s0 t0 t1; shift 2
  rm -f "$SCRATCH/curl.time"
  s0=$(srv_ticks); t0=$(now)
  for ((i = 0; i < k; i++)); do
    /usr/bin/time -a -o "$SCRATCH/curl.time" -f '%U %S' curl -q -sS --fail "$@" -o /dev/null "$url" &
  done
  wait
  t1=$(now)
  local w; w=$(elapsed "$t0" "$t1")
  V=$(mbs $((HUGE_BYTES * k)) "$w"); S=$(pct $(($(srv_ticks) - s0)) "$w")
  U=$(awk -v w="$w" '{u += $1 + $2} END{printf "%.0f", 100 * u / w}' "$SCRATCH/curl.time")
}

# rate LABEL SECONDS CMD...: a load generator (wrk or h2load) RUNS times; one row of req/s
rate() {
  local label=$1 secs=$2 out s0 r v=() m=() s=(); shift 2
  for ((r = 0; r < RUNS; r++)); do
    s0=$(srv_ticks)
    out=$("$@" 2>&1) || true
    s+=("$(pct $(($(srv_ticks) - s0)) "$secs")")
    if grep -qE 'Non-2xx|Socket errors' <<< "$out"; then log "$label: $(grep -E 'Non-2xx|Socket errors' <<< "$out")"; fi
    if ! awk '/^requests:/ && ($10 + $12 + $14) > 0 {exit 1}' <<< "$out"; then log "$label: $(grep '^requests:' <<< "$out")"; fi
    v+=("$(awk '/^Requests\/sec:/ {printf "%.0f", $2} /^finished in/ {printf "%.0f", $4}' <<< "$out")")
    m+=("$(awk '/^Transfer\/sec:/ {print $2} /^finished in/ {sub("/s$", "", $6); print $6}' <<< "$out")")
  done
  report "$label" req/s "(${m[*]}/s; nginx CPU% ${s[*]})" "${v[@]}"
}
wrk_small() { # wrk_small BASE_URL WRK_OPTS...
  local base=$1; shift
  wrk -t "$THREADS" -d "${SECS}s" "$@" -s "$BENCH/wrk_paths.lua" "$base/" -- "$LISTS/small.wrkpaths"
}

echo "== limits  $(date '+%F %T')  runs=$RUNS  load: $(cut -d' ' -f1-3 /proc/loadavg)"
row measure median best unit "all runs / notes"
if ((PLAIN)); then
  curl -q -sS --fail -o /dev/null "$HUGE"   # unmeasured: the first transfer after a pause is slower
  for k in 1 4; do
    v=() s=()
    for ((r = 0; r < RUNS; r++)); do parallel_curl "$k" "$HUGE"; v+=("$V"); s+=("$S"); done
    report "(a) loopback HTTP, curl -o /dev/null x$k" MB/s "(nginx CPU% ${s[*]})" "${v[@]}"
  done

  for mode in fdatasync cache; do
    v=()
    for ((r = 0; r < RUNS; r++)); do
      conv=(); [[ $mode == fdatasync ]] && conv=(conv=fdatasync)
      rm -f "$SCRATCH/dd"; sync
      t0=$(now); dd if=/dev/zero of="$SCRATCH/dd" bs=1M count="$DD_MIB" "${conv[@]}" status=none; t1=$(now)
      v+=("$(mbs $((DD_MIB * 1048576)) "$(elapsed "$t0" "$t1")")")
    done
    rm -f "$SCRATCH/dd"; sync
    report "(b) disk write dd $((DD_MIB / 1024)) GiB bs=1M ($mode)" MB/s "" "${v[@]}"
  done

  GO=$(go_bin) || die "go not found (mkfiles is built from scripts/bench/mkfiles)"
  (cd "$ROOT" && "$GO" build -o "$SCRATCH/mkfiles" ./scripts/bench/mkfiles)
  for j in 1 2 16; do
    v=()
    for ((r = 0; r < RUNS; r++)); do
      sync
      v+=("$("$SCRATCH/mkfiles" -d "$SCRATCH/mk.$j.$r" -n 10000 -size 4096 -dirs 100 -j "$j" | awk '{print $3}')")
    done
    rm -rf "$SCRATCH"/mk.*; sync
    report "(c) create+write+close 10000x4KiB, j=$j" files/s "" "${v[@]}"
  done

  if command -v wrk > /dev/null; then
    for c in 16 64; do rate "(d) nginx small-file req/s, wrk -t$THREADS -c$c" "$SECS" wrk_small "$BASE_URL" -c "$c"; done
  else echo "(d) wrk not installed: skipped"; fi
fi

if ((TLSPART)); then
  curl -q -sS --fail --cacert "$BENCH_CA" -o /dev/null "$HUGE_TLS"
  for proto in http1.1 http2; do
    for k in 1 4; do
      v=() s=() u=()
      for ((r = 0; r < RUNS; r++)); do
        parallel_curl "$k" "$HUGE_TLS" --cacert "$BENCH_CA" "--$proto"; v+=("$V"); s+=("$S"); u+=("$U")
      done
      report "(e) loopback HTTPS --$proto, curl x$k" MB/s "(nginx CPU% ${s[*]}; curl CPU% ${u[*]})" "${v[@]}"
    done
  done
  if command -v wrk > /dev/null; then
    for c in 16 64; do rate "(f) nginx TLS req/s, wrk h1.1 -t$THREADS -c$c" "$SECS" wrk_small "$TLS_BASE_URL" -c "$c"; done
    rate "(f) ... wrk h1.1 -c16 Connection: close" "$SECS" wrk_small "$TLS_BASE_URL" -c 16 -H "Connection: close"
  else echo "(f) wrk not installed: skipped"; fi
  if command -v h2load > /dev/null; then
    rate "(f) nginx TLS req/s, h2load h2 -c1 -m100" $((SECS + 1)) \
      h2load -t 1 -c 1 -m 100 -D "$SECS" --warm-up-time=1 -i "$LISTS/small-tls.txt"
    rate "(f) nginx TLS req/s, h2load h2 -t2 -c16 -m10" $((SECS + 1)) \
      h2load -t 2 -c 16 -m 10 -D "$SECS" --warm-up-time=1 -i "$LISTS/small-tls.txt"
  else echo "(f) h2load not installed (Debian's nghttp2-client): skipped"; fi
fi

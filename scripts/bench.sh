#!/usr/bin/env bash
# bench.sh [--no-limits]: haul against its peers on the loopback benchmark of scripts/bench/ and
# under WAN conditions, written up in docs/benchmarks.md with a chart (docs/benchmarks.svg). A full
# run takes an hour or more (the WAN profiles alone about 25 minutes); run it as root on an idle
# machine (setup installs packages).
#   1. scripts/bench/setup.sh: packages, dataset, CA, nginx on 127.0.0.1 (idempotent)
#   2. builds haul from this checkout into a temp dir (or uses $HAUL if set)
#   3. scripts/bench/limits.sh: the machine's ceilings (loopback HTTP/HTTPS, disk, file creation, nginx req/s)
#   4. scripts/bench/loopback.sh W C for each workload W in $WORKLOADS and concurrency C in $CONCURRENCY
#   5. haul only: a 10-million-line streaming list run with --shard 0/1000, and a re-run of the
#      finished small list (wall time and peak RSS)
#   6. scripts/bench/wan.sh P $WAN_C for each WAN profile P in $WAN_PROFILES (latency, many hosts,
#      capped servers), every peer it knows; on capped-* also haul --split 16 (tool haul-split16)
#   7. scripts/bench/hosts.sh P for each profile P in $HOSTS_PROFILES (none by default: root, long)
#   8. scripts/benchreport: tables + SVG chart into $BENCH_DOCS (docs/)
# Everything printed goes to bench-out/bench-STAMP.txt, the data to bench-out/bench-STAMP/ (both
# git-ignored); `go run ./scripts/benchreport -dir bench-out/bench-STAMP` redoes step 8.
# Every run writes to a fresh dir under a `chattr +T` parent (see scripts/bench/README.md).
# Env: WORKLOADS (all: "small medium large huge small-tls medium-tls large-tls huge-tls"),
#      CONCURRENCY ("16 64"), BENCH_RUNS (3), BENCH_TOOLS (peers subset, e.g. "curl haul"),
#      LIMITS (1; 0 = skip limits.sh, like --no-limits), LIMITS_FILE (reuse a saved limits.sh
#      output instead of running it), EXTRA (1; 0 = skip step 5), STREAM_LINES (10000000; the
#      list is cached in $BENCH_DIR, ~530 MB), HAUL (a prebuilt binary), BENCH_DOCS ($ROOT/docs;
#      "" = no report), and whatever loopback.sh, limits.sh and setup.sh read (BENCH_DIR,
#      BENCH_PORT, LIMITS_RUNS, WRK_SECONDS, ...).
#      WORKLOADS="" skips the loopback workloads. WAN_PROFILES (all six: "far-small far-small-tls
#      many-hosts many-hosts-tls capped-large capped-huge"; "" skips them), WAN_C (16), WAN_TOOLS
#      (wan.sh's tools; default all it knows), WAN_SPLIT (1; 0 = no haul-split16 runs), and what
#      wan.sh reads (WAN_RTT_MS, WAN_HOSTS, WAN_RATE, ...). HOSTS_PROFILES ("": e.g. "hosts
#      hosts-tls hosts-reuse"), HOSTS_C (64), and what hosts.sh reads (HOSTS_N, ...).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/scripts/bench
command -v go >/dev/null || PATH=/usr/local/go/bin:$PATH
LIMITS=${LIMITS:-1}
for a in "$@"; do
  case $a in
    --limits) LIMITS=1 ;;     # the default
    --no-limits) LIMITS=0 ;;
    -h|--help) sed -n '2,31p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "bench.sh: unknown argument $a (usage: bench.sh [--no-limits])" >&2; exit 2 ;;
  esac
done
read -r -a workloads <<< "${WORKLOADS-small medium large huge small-tls medium-tls large-tls huge-tls}"
read -r -a wan_profiles <<< "${WAN_PROFILES-far-small far-small-tls many-hosts many-hosts-tls capped-large capped-huge}"
read -r -a hosts_profiles <<< "${HOSTS_PROFILES:-}"
WAN_C=${WAN_C:-16}
WAN_SPLIT=${WAN_SPLIT:-1}
read -r -a concurrency <<< "${CONCURRENCY:-16 64}"
export BENCH_RUNS=${BENCH_RUNS:-3}
EXTRA=${EXTRA:-1}
STREAM_LINES=${STREAM_LINES:-10000000}
BENCH_DOCS=${BENCH_DOCS-$ROOT/docs}
# shellcheck source=scripts/bench/lib.sh
source "$BENCH/lib.sh"    # BENCH_DIR, LISTS, RESULTS, BASE_URL (sets its own WORKLOADS)

STAMP=$(date +%Y%m%dT%H%M%S)
mkdir -p "$ROOT/bench-out"
OUTFILE=$ROOT/bench-out/bench-$STAMP.txt
RUN=$ROOT/bench-out/bench-$STAMP        # data for benchreport
mkdir -p "$RUN/peers"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/haul-build.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# timed OUT LOG CMD...: runs CMD under /usr/bin/time, sets RC and TIMES ("wall user sys maxrss_kb")
timed() {
  local out=$1 log=$2; shift 2
  RC=0
  /usr/bin/time -f '%e %U %S %M' -o "$out" timeout -k 5 "${BENCH_TIMEOUT:-1200}" "$@" > "$log" 2>&1 || RC=$?
  TIMES=$(tail -n 1 "$out")
}

# count_files DIR: completed files under DIR (not .part)
count_files() { find "$1" -type f ! -name '*.part' | wc -l; }

# extra_row MEASURE RUN LINES EXPECTED DIR: appends a line to extra.tsv from RC, TIMES and DIR
extra_row() {
  local files status=ok
  files=$(count_files "$5")
  ((RC == 0 && files == $4)) || status=FAILED
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$status" "$RC" "$(tr ' ' '\t' <<< "$TIMES")" \
    "$3" "$files" "$4" >> "$RUN/extra.tsv"
  echo "   $1 run $2: $status rc=$RC files=$files/$4 (wall user sys maxrss_kb: $TIMES)"
}

# haul-only measurements that loopback.sh does not make (plain HTTP, small files, -j 16 default)
haul_extra() {
  local xo=$BENCH_DIR/out-haul list=$BENCH_DIR/haul-stream-$STREAM_LINES-$BENCH_PORT.txt expect r o n
  mkdir -p "$xo"; chattr +T "$xo" 2>/dev/null || true
  printf 'measure\trun\tstatus\trc\twall_s\tuser_s\tsys_s\tmaxrss_kb\tlines\tfiles\texpected\n' > "$RUN/extra.tsv"
  echo; echo "== haul only: streaming list of $STREAM_LINES lines (--shard 0/1000), re-run of small"
  # the list: the small workload's URLs with ?r=I (every line distinct; nginx ignores the query)
  if [[ ! -s $list || ! -s $list.shard0of1000 ]]; then
    "$TMP/benchreport" -genlist "$list.tmp" -lines "$STREAM_LINES" -base "$BASE_URL" -shard 0/1000 \
      > "$list.shard0of1000.tmp"
    mv "$list.tmp" "$list"; mv "$list.shard0of1000.tmp" "$list.shard0of1000"
  fi
  expect=$(cat "$list.shard0of1000")
  echo "   list $list: $(stat -c %s "$list") bytes, $expect lines in shard 0/1000"
  for ((r = 1; r <= BENCH_RUNS; r++)); do
    o=$xo/stream-$STAMP.$r; mkdir "$o"; sync
    timed "$TMP/time" "$RUN/stream.$r.log" "$HAUL" -i "$list" -d "$o" --shard 0/1000 -q
    extra_row stream "$r" "$STREAM_LINES" "$expect" "$o"
    rm -rf "$o"
  done
  n=$(wc -l < "$LISTS/small.txt")
  for ((r = 1; r <= BENCH_RUNS; r++)); do
    o=$xo/rerun-$STAMP.$r; mkdir "$o"; sync
    timed "$TMP/time" "$RUN/first.$r.log" "$HAUL" -i "$LISTS/small.txt" -d "$o" -q
    extra_row first "$r" "$n" "$n" "$o"
    sync
    timed "$TMP/time" "$RUN/rerun.$r.log" "$HAUL" -i "$LISTS/small.txt" -d "$o" -q
    extra_row rerun "$r" "$n" "$n" "$o"
    rm -rf "$o"
  done
  find "$RUN" -maxdepth 1 -name '*.log' -empty -delete
}

# raw_tsv OUT: the results file named by the "(raw runs: .../results/TAG.tsv; ...)" line that
# loopback.sh, wan.sh and hosts.sh end with
raw_tsv() { sed -n 's|^(raw runs: .*/results/\([^;/]*\.tsv\);.*|\1|p' "$1" | tail -n 1; }

# run_wan: wan.sh for each WAN profile into $RUN/wan/P-cC.tsv (raw runs) and P-cC.out (its output:
# the limit); on capped-*, haul with --split 16 too (tool haul-split16), its rows added
run_wan() {
  local p base tag rc
  mkdir -p "$RUN/wan"
  printf '#!/bin/sh\nexec "%s" --split 16 "$@"\n' "$HAUL" > "$TMP/haul-split16"
  chmod +x "$TMP/haul-split16"
  for p in "${wan_profiles[@]}"; do
    base=$RUN/wan/$p-c$WAN_C
    echo; rc=0
    BENCH_TOOLS=${WAN_TOOLS:-} bash "$BENCH/wan.sh" "$p" "$WAN_C" | tee "$base.out" || rc=$?
    tag=$(raw_tsv "$base.out")
    if [[ -z $tag || ! -s $RESULTS/$tag ]]; then
      echo "bench.sh: wan.sh $p $WAN_C failed (rc=$rc), no results"; rm -f "$base.out"; continue
    fi
    cp "$RESULTS/$tag" "$base.tsv"
    if [[ $p == capped-* ]] && ((WAN_SPLIT)); then
      echo; rc=0
      HAUL_SPLIT16=$TMP/haul-split16 BENCH_TOOLS=haul-split16 bash "$BENCH/wan.sh" "$p" "$WAN_C" | tee "$base.split16.out" || rc=$?
      tag=$(raw_tsv "$base.split16.out")
      if [[ -n $tag && -s $RESULTS/$tag ]]; then
        tail -n +2 "$RESULTS/$tag" >> "$base.tsv"
      else echo "bench.sh: wan.sh $p $WAN_C with haul --split 16 failed (rc=$rc), no results"; fi
    fi
  done
}

main() {
  local rev dirty w c rc tag has_plain=0 has_tls=0 lflag=()
  rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
  dirty=$(git -C "$ROOT" status --porcelain 2>/dev/null | grep -c . || true)
  echo "== bench.sh $(date '+%F %T')  haul $rev (+$dirty uncommitted paths)  $(go version | cut -d' ' -f3)"
  echo "   workloads=${workloads[*]} concurrency=${concurrency[*]} wan=${wan_profiles[*]} (-j $WAN_C) BENCH_RUNS=$BENCH_RUNS" \
       "BENCH_TOOLS=${BENCH_TOOLS:-all} limits=$LIMITS extra=$EXTRA  log: $OUTFILE  data: $RUN"
  {
    echo "date: $(date '+%F %T %Z')"
    echo "haul: $rev (+$dirty uncommitted paths), $(go version | cut -d' ' -f3-)"
    echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(free -g | awk '/^Mem:/{print $2}') GiB RAM, Linux $(uname -r)"
    echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "command: WORKLOADS=\"${workloads[*]}\" CONCURRENCY=\"${concurrency[*]}\" WAN_PROFILES=\"${wan_profiles[*]}\" WAN_C=$WAN_C BENCH_RUNS=$BENCH_RUNS BENCH_TOOLS=\"${BENCH_TOOLS:-all}\" scripts/bench.sh"
  } > "$RUN/meta.txt"

  bash "$BENCH/setup.sh"
  (cd "$ROOT" && go build -o "$TMP/benchreport" ./scripts/benchreport)
  if [[ -n ${HAUL:-} ]]; then
    [[ -x $HAUL ]] || { echo "bench.sh: HAUL=$HAUL is not executable" >&2; exit 1; }
    echo "   using prebuilt HAUL=$HAUL"
  else
    (cd "$ROOT" && go build -o "$TMP/haul" ./cmd/haul)
    HAUL=$TMP/haul
  fi
  export HAUL
  : > "$RUN/workloads.txt"
  for w in "${workloads[@]}"; do
    printf '%s\t%s\t%s\n' "$w" "$(wc -l < "$LISTS/$w.txt")" "$(cat "$LISTS/$w.bytes")" >> "$RUN/workloads.txt"
    if [[ $w == *-tls ]]; then has_tls=1; else has_plain=1; fi
  done

  if [[ -n ${LIMITS_FILE:-} ]]; then
    echo "   limits: reusing $LIMITS_FILE"; cp "$LIMITS_FILE" "$RUN/limits.txt"
  elif ((LIMITS)) && ((${#workloads[@]})); then
    ((has_tls)) || lflag=(--no-tls)
    ((has_plain)) || lflag=(--tls-only)
    echo; bash "$BENCH/limits.sh" "${lflag[@]}" | tee "$RUN/limits.txt"
  fi

  for w in "${workloads[@]}"; do
    for c in "${concurrency[@]}"; do
      echo; rc=0
      bash "$BENCH/loopback.sh" "$w" "$c" | tee "$TMP/loopback.out" || rc=$?
      tag=$(raw_tsv "$TMP/loopback.out")
      if [[ -n $tag && -s $RESULTS/$tag ]]; then cp "$RESULTS/$tag" "$RUN/peers/"
      else echo "bench.sh: loopback.sh $w $c failed (rc=$rc), no results"; fi
    done
  done

  if ((EXTRA)) && ((${#workloads[@]})); then haul_extra; fi
  if ((${#wan_profiles[@]})); then run_wan; fi
  for p in "${hosts_profiles[@]}"; do
    mkdir -p "$RUN/hosts"; echo
    bash "$BENCH/hosts.sh" "$p" "${HOSTS_C:-64}" | tee "$RUN/hosts/$p.out" || echo "bench.sh: hosts.sh $p failed"
  done

  if [[ -n $BENCH_DOCS ]]; then
    mkdir -p "$BENCH_DOCS"
    echo; echo "== report: $BENCH_DOCS/benchmarks.md, $BENCH_DOCS/benchmarks.svg"
    "$TMP/benchreport" -dir "$RUN" -out "$BENCH_DOCS/benchmarks.md" -svg "$BENCH_DOCS/benchmarks.svg"
  fi
}

main 2>&1 | tee "$OUTFILE"

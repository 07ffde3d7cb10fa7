#!/usr/bin/env bash
# bench.sh [--limits]: haul against its peers on the shared loopback benchmark.
#   1. $BENCH_SHARED/setup.sh: packages, dataset, nginx on 127.0.0.1 (idempotent)
#   2. builds haul from this checkout into a temp dir
#   3. with --limits: limits.sh (machine ceilings: loopback, disk, small files, nginx)
#   4. peers.sh W C for each workload W in $WORKLOADS and concurrency C in $CONCURRENCY,
#      with HAUL set to the fresh binary
# Everything printed is also saved to bench-out/bench-YYYYmmddTHHMMSS.txt (git-ignored).
# peers.sh writes each run to a fresh dir under a `chattr +T` parent (see bench/README.md).
# Env: WORKLOADS ("small medium large"; also huge, *-tls), CONCURRENCY ("16 64"), BENCH_RUNS (3),
#      BENCH_TOOLS (subset of peers, e.g. "curl haul"), BENCH_SHARED (../shared/bench from the
#      repo), and any other variable peers.sh/setup.sh read (BENCH_DIR, BENCH_PORT, ...).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_SHARED=${BENCH_SHARED:-$ROOT/../shared/bench}
command -v go >/dev/null || PATH=/usr/local/go/bin:$PATH
LIMITS=0
for a in "$@"; do
  case $a in
    --limits) LIMITS=1 ;;
    -h|--help) sed -n '2,12p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "bench.sh: unknown argument $a (usage: bench.sh [--limits])" >&2; exit 2 ;;
  esac
done
[[ -f $BENCH_SHARED/peers.sh ]] ||
  { echo "bench.sh: no peers.sh in $BENCH_SHARED (set BENCH_SHARED)" >&2; exit 1; }
read -r -a workloads <<< "${WORKLOADS:-small medium large}"
read -r -a concurrency <<< "${CONCURRENCY:-16 64}"
export BENCH_RUNS=${BENCH_RUNS:-3}

mkdir -p "$ROOT/bench-out"
OUTFILE=$ROOT/bench-out/bench-$(date +%Y%m%dT%H%M%S).txt
TMP=$(mktemp -d "${TMPDIR:-/tmp}/haul-build.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

main() {
  local rev dirty w c
  rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
  dirty=$(git -C "$ROOT" status --porcelain 2>/dev/null | grep -c . || true)
  echo "== bench.sh $(date '+%F %T')  haul $rev (+$dirty uncommitted paths)  $(go version | cut -d' ' -f3)"
  echo "   workloads=${workloads[*]} concurrency=${concurrency[*]} BENCH_RUNS=$BENCH_RUNS" \
       "BENCH_TOOLS=${BENCH_TOOLS:-all} limits=$LIMITS  log: $OUTFILE"

  bash "$BENCH_SHARED/setup.sh"
  (cd "$ROOT" && go build -o "$TMP/haul" ./cmd/haul)
  export HAUL=$TMP/haul
  if ((LIMITS)); then bash "$BENCH_SHARED/limits.sh"; fi
  for w in "${workloads[@]}"; do
    for c in "${concurrency[@]}"; do
      echo
      bash "$BENCH_SHARED/peers.sh" "$w" "$c"
    done
  done
}

main 2>&1 | tee "$OUTFILE"

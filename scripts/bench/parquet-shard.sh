#!/usr/bin/env bash
# parquet-shard.sh: what a big dataset list costs one shard. Writes a LAION-style Parquet list of
# ROWS rows (default 10,000,000; mkparquet/, kept under $BENCH_DIR/parquet for the next run) and
# the same URLs as a text list, then runs haul --shard 0/1000 --dry-run over each (nothing is
# asked, nothing written: the cost is the list's reading) and prints wall time, CPU and peak RSS.
# The URLs point at 127.0.0.1:1; --dry-run never connects. HAUL_OPTS adds haul flags (HAUL_OPTS=--tar).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
command -v go >/dev/null || PATH=/usr/local/go/bin:$PATH
ROWS=${ROWS:-10000000}
SHARD=${SHARD:-0/1000}
read -r -a HOPTS <<< "${HAUL_OPTS:-}"   # more haul flags, e.g. HAUL_OPTS=--tar
dir=${BENCH_DIR:-/tmp/haul-bench}/parquet
mkdir -p "$dir"
go build -o "$dir/haul" ./cmd/haul
pq=$dir/list-$ROWS.parquet txt=$dir/list-$ROWS.txt
if [[ ! -s $pq || ! -s $txt ]]; then
    go run ./scripts/bench/mkparquet -rows "$ROWS" -o "$pq" -text "$txt"
fi
echo "list: $ROWS rows, $(du -h "$pq" | cut -f1) as Parquet, $(du -h "$txt" | cut -f1) as text; --shard $SHARD --dry-run ${HAUL_OPTS:-}"
for list in "$pq" "$txt"; do
    rm -rf "$dir/out"
    # --dry-run exits 1 when a run would fetch something: here, every entry of the shard.
    code=0
    /usr/bin/time -f "%e s wall, %U s user, %S s sys, peak RSS %M KiB" -o "$dir/time" \
        "$dir/haul" -i "$list" --shard "$SHARD" --dry-run -q -d "$dir/out" ${HOPTS[@]+"${HOPTS[@]}"} > "$dir/plan" || code=$?
    if [[ $code != 1 ]]; then
        echo "haul exited $code on $list" >&2
        exit 1
    fi
    printf '%-8s %7d entries planned: %s\n' "${list##*.}" "$(wc -l < "$dir/plan")" "$(tail -1 "$dir/time")"
done

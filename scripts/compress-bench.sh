#!/usr/bin/env bash
# compress-bench.sh: haul's compressed sinks against the pipeline a user would write instead,
# on the loopback benchmark's nginx and dataset (run scripts/bench/setup.sh first).
#   haul -i LIST -d OUT --compress zstd|gzip --compress-level 1
#   vs. xargs -P C: curl -s URL | zstd -1 -q > OUT/NAME.zst   (and gzip -1)
# For each workload in $COMPRESS_WORKLOADS (medium large) at concurrency $C (16): median wall of
# BENCH_RUNS runs, files/s, MB/s (10^6 B of body), CPU seconds (user+sys, all processes),
# peak RSS of the largest process, and the compression ratio (stored / body bytes).
# The bench dataset is random bytes (incompressible); set COMPRESS_TEXT=1 to also run on a
# generated compressible text file served from the same nginx root.
set -euo pipefail
# shellcheck source=scripts/benchlib.sh
source "$(dirname "${BASH_SOURCE[0]}")/benchlib.sh" out-compress
R=${BENCH_RUNS:-3}
C=${C:-16}
read -r -a workloads <<< "${COMPRESS_WORKLOADS:-medium large}"   # (common.sh defines WORKLOADS)

if [[ ${COMPRESS_TEXT:-0} == 1 ]]; then
  mkdir -p "$WWW/text"
  if [[ ! -s $WWW/text/t0.txt ]]; then
    for i in 0 1 2 3; do
      # ~128 MiB of log-like text per file: compressible, not trivially so
      seq 1 4000000 | awk -v i="$i" '{printf "%d host%d GET /p/%x %d %d\n", $1, $1%97, $1*7919+i, 200+($1%5), $1%65536}' > "$WWW/text/t$i.txt"
    done
  fi
  for i in 0 1 2 3; do echo "$BASE_URL/text/t$i.txt"; done > "$LISTS/text.txt"
  workloads+=(text)
fi

# pipeline LIST OUT CODEC: what a user would write instead of haul
pipeline() {
  local ext=zst; [[ $3 == gzip ]] && ext=gz
  # shellcheck disable=SC2016 # $1 and $2 expand in the inner sh
  xargs -a "$1" -P "$C" -I{} sh -c 'u="$1"; curl -s --fail "$u" | '"$3"' -1 -c > "$2/$(basename "$u").'"$ext"'"' _ {} "$2"
}

printf '%-8s %-14s %8s %9s %8s %7s %8s %7s\n' workload tool wall_s files/s MB/s cpu_s rss_MiB ratio
for w in "${workloads[@]}"; do
  list=$LISTS/$w.txt
  n=$(wc -l < "$list")
  bytes=$(while read -r u; do curl -sI "$u" | awk 'tolower($1)=="content-length:" {printf "%d\n", $2}'; done < "$list" |
          awk '{s+=$1} END {print s}')
  for tool in haul-zstd pipe-zstd haul-gzip pipe-gzip; do
    codec=${tool#*-}
    rows=()
    for ((r = 1; r <= R; r++)); do
      o=$(fresh); sync
      case $tool in
        haul-*) /usr/bin/time -f '%e %U %S %M' -o "$TMP/t" "$HAUL" -q -i "$list" -d "$o" -j "$C" \
                  --compress "$codec" --compress-level 1 ;;
        pipe-*) /usr/bin/time -f '%e %U %S %M' -o "$TMP/t" bash -c "$(declare -f pipeline); C=$C; pipeline '$list' '$o' $codec" ;;
      esac
      stored=$(find "$o" -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}')
      rows+=("$(tail -n 1 "$TMP/t") $stored")
      rm -rf "$o"
    done
    printf '%s\n' "${rows[@]}" | sort -g | awk -v w="$w" -v t="$tool" -v n="$n" -v b="$bytes" '
      {a[NR]=$0} END { split(a[int((NR+1)/2)], f, " ");
        printf "%-8s %-14s %8.2f %9.1f %8.1f %7.2f %8.1f %7.3f\n", w, t, f[1], n/f[1], b/1e6/f[1], f[2]+f[3], f[4]/1024, f[5]/b }'
  done
done

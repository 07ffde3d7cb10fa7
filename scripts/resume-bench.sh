#!/usr/bin/env bash
# resume-bench.sh: what durability and resuming cost, on the loopback benchmark's nginx and dataset
# (run scripts/bench/setup.sh first).
#   1. durability cost: small and large workloads, default (group commit) vs --no-sync, BENCH_RUNS each
#   2. re-run of a finished 10,000-entry list (everything skipped): wall time and peak RSS
#   3. a 2 GiB download killed (SIGKILL) at ~50%, then resumed: bytes re-fetched and wall times
# Each run writes into a fresh directory under a `chattr +T` parent (see scripts/bench/README.md).
set -euo pipefail
# shellcheck source=scripts/benchlib.sh
source "$(dirname "${BASH_SOURCE[0]}")/benchlib.sh" out-resume
R=${BENCH_RUNS:-5}

timed() { /usr/bin/time -f '%e %M' -o "$TMP/t" "$@" >/dev/null 2>&1 || true; cat "$TMP/t"; }

echo "== 1. durability cost (median wall of $R runs, seconds; peak RSS KiB)"
for w in small large; do
  for mode in sync no-sync; do
    flag=(); [[ $mode == no-sync ]] && flag=(--no-sync)
    walls=()
    for ((r = 1; r <= R; r++)); do
      o=$(fresh); sync
      read -r wall rss < <(timed "$HAUL" -q -i "$LISTS/$w.txt" -d "$o" -j 16 "${flag[@]}")
      walls+=("$wall"); rm -rf "$o"
    done
    printf '%-6s %-8s median %s s  (runs: %s)  rss %s KiB\n' "$w" "$mode" \
      "$(printf '%s\n' "${walls[@]}" | median)" "${walls[*]}" "$rss"
  done
done

echo "== 2. re-run of a finished 10,000-entry list"
o=$(fresh)
"$HAUL" -q -i "$LISTS/small.txt" -d "$o" -j 16
for ((r = 1; r <= 3; r++)); do
  read -r wall rss < <(timed "$HAUL" -q -i "$LISTS/small.txt" -d "$o" -j 16)
  echo "re-run $r: ${wall} s, peak RSS ${rss} KiB"
done
rm -rf "$o"

echo "== 3. 2 GiB download killed at ~50%, then resumed"
o=$(fresh)
url=$(head -n 1 "$LISTS/huge.txt")
size=$(curl -sI "$url" | awk 'tolower($1)=="content-length:" {printf "%.0f", $2}')
t0=$(now)
"$HAUL" -q -d "$o" "$url" & pid=$!
part=$(find "$o" -name '*.part' 2>/dev/null | head -n 1)
while kill -0 "$pid" 2>/dev/null; do
  part=$(find "$o" -name '*.part' 2>/dev/null | head -n 1)
  # allocated bytes, not the length: with --split the pieces write at their own offsets
  [[ -n $part ]] && (($(stat -c '%b * %B' "$part") >= size / 2)) && break
  sleep 0.05
done
kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
t1=$(now)
have=$(($(stat -c '%b * %B' "$part")))
# haul's summary line says how many body bytes this run received ("...; 1.1 GB in 1.2s ...").
/usr/bin/time -f '%e %M' -o "$TMP/t" "$HAUL" -d "$o" "$url" 2> "$TMP/summary" >/dev/null || true
read -r wall rss < "$TMP/t"
refetched=$(grep -o '[0-9.]* [kMG]*B in' "$TMP/summary" | tail -n 1 | sed 's/ in$//')
final=$(find "$o" -type f ! -name '*.part' | head -n 1)
ok=$(cmp -s "$final" "$WWW/huge/$(basename "$final")" && echo identical || echo DIFFERENT)
printf 'killed after %.2f s with %d of %d bytes written to the .part file\n' "$(echo "$t1 - $t0" | bc)" "$have" "$size"
printf 'resume: %s s, peak RSS %s KiB, %s received (file: %d bytes), result %s\n' \
  "$wall" "$rss" "$refetched" "$size" "$ok"
rm -rf "$o"

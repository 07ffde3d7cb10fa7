#!/usr/bin/env bash
# ab-bench.sh A B: two haul binaries side by side on the shared loopback benchmark (peers.sh's
# dataset and nginx), interleaved A B A B ... so that both see the same machine, for "no workload
# slower after this change" checks. Each run writes to a fresh dir under a `chattr +T` parent,
# counts only if the multiset of sha256 of its files equals the dataset's, and records wall time,
# CPU (user+sys) and peak RSS. Prints per workload the median of each and the ratio B/A.
# Needs ../shared/bench/setup.sh to have run (it starts nginx).
# Env: WORKLOADS ("small medium large huge small-tls medium-tls large-tls huge-tls"), RUNS (5),
#      C (16, haul -j), BENCH_SHARED (../shared/bench), BENCH_DIR (as setup.sh), VERIFY (1).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_SHARED=${BENCH_SHARED:-$ROOT/../shared/bench}
want_workloads=${WORKLOADS:-small medium large huge small-tls medium-tls large-tls huge-tls}
# shellcheck source=/dev/null
source "$BENCH_SHARED/common.sh" # sets its own WORKLOADS array
A=${1:?usage: ab-bench.sh HAUL_A HAUL_B}
B=${2:?usage: ab-bench.sh HAUL_A HAUL_B}
read -r -a workloads <<< "$want_workloads"
RUNS=${RUNS:-5}
C=${C:-16}
VERIFY=${VERIFY:-1}
nginx_running || die "nginx is not running: run $BENCH_SHARED/setup.sh first"
PARENT=$BENCH_DIR/ab-out
mkdir -p "$PARENT"
chattr +T "$PARENT" 2>/dev/null || log "chattr +T failed on $PARENT: file creation may be slow after deletes"

run_one() { # run_one BIN LIST TLS OUT -> prints "wall cpu rss_kib"
  local bin=$1 list=$2 tls=$3 out=$4 env=() t
  ((tls)) && env=(SSL_CERT_FILE="$BENCH_CA")
  t=$(mktemp)
  local t0 t1
  t0=$(now)
  env "${env[@]}" /usr/bin/time -f '%U %S %M' -o "$t" "$bin" -q -i "$list" -d "$out" -j "$C" --layout tree ||
    { rm -f "$t"; return 1; }
  t1=$(now)
  read -r u s m < "$t"
  rm -f "$t"
  awk -v a="$t0" -v b="$t1" -v u="$u" -v s="$s" -v m="$m" 'BEGIN{printf "%.3f %.2f %d\n", b-a, u+s, m}'
}

printf '%-11s %4s  %-22s %-22s %s\n' workload n "A wall/cpu/rssMiB" "B wall/cpu/rssMiB" "B/A wall (cpu)"
for w in "${workloads[@]}"; do
  tls=0; [[ $w == *-tls ]] && tls=1
  list=$BENCH_DIR/$w.txt
  [[ -s $list ]] || die "no list $list: run setup.sh"
  want=$LISTS/$w.sha
  declare -a aw=() ac=() am=() bw=() bc=() bm=()
  for ((i = 0; i < RUNS; i++)); do
    for side in A B; do
      bin=$A; [[ $side == B ]] && bin=$B
      out=$(mktemp -d "$PARENT/$w-$side-XXXX")
      if ! r=$(run_one "$bin" "$list" "$tls" "$out"); then
        log "$w $side run $i FAILED"; rm -rf "$out"; continue
      fi
      if ((VERIFY)) && ! cmp -s <(hash_tree "$out") "$want"; then
        log "$w $side run $i: files differ from the dataset"; rm -rf "$out"; continue
      fi
      rm -rf "$out"
      read -r wall cpu rss <<< "$r"
      if [[ $side == A ]]; then aw+=("$wall"); ac+=("$cpu"); am+=("$rss")
      else bw+=("$wall"); bc+=("$cpu"); bm+=("$rss"); fi
    done
  done
  med() { printf '%s\n' "$@" | median; }
  maxr() { printf '%s\n' "$@" | sort -n | tail -1 | awk '{printf "%.0f", $1/1024}'; }
  a1=$(med "${aw[@]}") a2=$(med "${ac[@]}") a3=$(maxr "${am[@]}")
  b1=$(med "${bw[@]}") b2=$(med "${bc[@]}") b3=$(maxr "${bm[@]}")
  printf '%-11s %4s  %-22s %-22s %s\n' "$w" "${#aw[@]}/${#bw[@]}" "$a1/$a2/$a3" "$b1/$b2/$b3" \
    "$(awk -v a="$a1" -v b="$b1" -v c="$a2" -v d="$b2" 'BEGIN{printf "%.3f (%.3f)", b/a, d/c}')"
  echo "  A walls: ${aw[*]}" >&2
  echo "  B walls: ${bw[*]}" >&2
done

#!/usr/bin/env bash
# ab-bench.sh A B: two haul binaries side by side on the loopback benchmark (scripts/bench/), so
# that a change can be shown to make no workload slower. Per workload, scripts/bench/loopback.sh
# runs A and B (tools haul-a and haul-b) RUNS rounds, alternating which goes first, each run into
# a fresh directory and verified against the dataset's hashes; then this prints the medians of
# wall time and CPU (user+sys), the peak RSS, and B's ratio to A.
# Needs scripts/bench/setup.sh to have run (it starts nginx).
# Env: WORKLOADS ("small medium large huge small-tls medium-tls large-tls huge-tls"), RUNS (5),
#      C (16, haul -j), HAUL_OPTS (flags for both), BENCH_DIR (as setup.sh).
set -euo pipefail
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")/bench" && pwd)
want_workloads=${WORKLOADS:-small medium large huge small-tls medium-tls large-tls huge-tls}
# shellcheck source=scripts/bench/lib.sh
source "$BENCH/lib.sh"
A=${1:?usage: ab-bench.sh HAUL_A HAUL_B}
B=${2:?usage: ab-bench.sh HAUL_A HAUL_B}
[[ -x $A && -x $B ]] || die "both arguments must be haul binaries"
read -r -a workloads <<< "$want_workloads"
nginx_running || die "nginx is not running: run scripts/bench/setup.sh"

summary=()
for w in "${workloads[@]}"; do
  out=$(HAUL_A=$(realpath "$A") HAUL_B=$(realpath "$B") BENCH_TOOLS="haul-a haul-b" BENCH_RUNS=${RUNS:-5} \
        bash "$BENCH/loopback.sh" "$w" "${C:-16}" | tee /dev/stderr)
  tsv=$BENCH_DIR/results/$(sed -n 's|^(raw runs: .*/results/\([^;/]*\.tsv\);.*|\1|p' <<< "$out")
  [[ -s $tsv ]] || die "$w: loopback.sh left no results"
  summary+=("$(awk -F'\t' -v w="$w" '
    function med(k, n,   i, j, x, a) {
      for (i = 1; i <= n; i++) a[i] = V[k, i]
      for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
      return n ? ((n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2) : 0
    }
    NR > 1 { all[$1]++ }
    NR > 1 && $3 == "ok" { n[$1]++; V[$1 "w", n[$1]] = $5; V[$1 "c", n[$1]] = $6 + $7; if ($8 > m[$1]) m[$1] = $8 }
    END {
      aw = med("haul-aw", n["haul-a"]); ac = med("haul-ac", n["haul-a"])
      bw = med("haul-bw", n["haul-b"]); bc = med("haul-bc", n["haul-b"])
      printf "%-11s %2d/%-2d %2d/%-2d  %6.2f %6.2f %5.0f  %6.2f %6.2f %5.0f  %6.3f (%.3f)", w, n["haul-a"], all["haul-a"],
        n["haul-b"], all["haul-b"], aw, ac, m["haul-a"] / 1024, bw, bc, m["haul-b"] / 1024,
        aw ? bw / aw : 0, ac ? bc / ac : 0
    }' "$tsv")")
done
echo
printf '%-11s %5s %5s  %6s %6s %5s  %6s %6s %5s  %s\n' workload A_ok B_ok A_wall A_cpu A_MiB B_wall B_cpu B_MiB "B/A wall (cpu)"
printf '%s\n' "${summary[@]}"

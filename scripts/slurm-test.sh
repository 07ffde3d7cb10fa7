#!/usr/bin/env bash
# slurm-test.sh: runs deploy/slurm/haul-array.sbatch, unchanged, on a real single-node Slurm
# cluster that it sets up on this machine (as root; loopback only), and checks the result.
#   1. installs slurmctld, slurmd, munge when missing (apt-get update only then)
#   2. a munge key (/etc/munge/munge.key, munge:munge 0400) if there is none; starts munged
#      unless one answers already
#   3. slurm.conf in a temp dir: this machine (hostname -s, at 127.0.0.1) as controller and
#      only node, CPUs = nproc, proctrack/linuxproc, task/none, select/cons_tres, free ports;
#      starts slurmctld and slurmd (logs in the temp dir) and waits for the node to be idle
#   4. builds haul and scripts/slurmcheck; slurmcheck serves generated files on 127.0.0.1
#      and logs every response
#   5. run 1: the 4-task array over one list into one directory (sbatch --wait); checks every
#      file present once and byte-correct (the list's sha256=), manifest-K.jsonl holding only
#      shard K's entries (FNV-1a recomputed by slurmcheck), every file requested exactly once
#   6. run 2, against a slow server: task 1 is requeued (scontrol requeuehold: Slurm stops it
#      with SIGTERM, as for scontrol requeue, and holds it) while it has partial files; then
#      released. Checks as in run 1, and that the requeued task fetched only what it lacked:
#      nothing it had finished, partial files resumed with Range (206), no more bytes than
#      were missing
# Prints the figures; exits non-zero on any failure. Stops every daemon it started, on any
# exit. Env: SLURM_TEST_FILES (300), SLURM_TEST_KEEP=1 keeps the temp dir.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FILES=${SLURM_TEST_FILES:-300}
SBATCH_SCRIPT=$ROOT/deploy/slurm/haul-array.sbatch
T0=$(date +%s.%N)
say() { printf '== %s\n' "$*"; }
die() { printf 'slurm-test: FAIL: %s\n' "$*" >&2; exit 1; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}'; }
command -v go >/dev/null || PATH=/usr/local/go/bin:$PATH
command -v go >/dev/null || die "go not found (PATH, /usr/local/go/bin)"
[[ $(id -u) == 0 ]] || die "needs root: it installs packages, writes /etc/munge/munge.key and runs slurmd"

# ---- 1. packages
missing=()
for pair in slurmctld:slurmctld slurmd:slurmd munged:munge sbatch:slurm-client; do
  command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
if ((${#missing[@]})); then
  say "installing ${missing[*]}"
  apt-get update -qq
  # Debian's maintainer scripts may try to start the daemons: no systemd here, and this
  # script starts its own, so tell invoke-rc.d not to (policy-rc.d exit 101), for the install only.
  policy=/usr/sbin/policy-rc.d
  [[ -e $policy ]] && cp -p "$policy" "$policy.slurm-test" || true
  printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
  if [[ -e $policy.slurm-test ]]; then mv "$policy.slurm-test" "$policy"; else rm -f "$policy"; fi
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/haul-slurm.XXXXXX")
chmod 755 "$TMP" # slurmd and the jobs (root) use it; so do munge's checks of paths
PIDS=() MUNGED_STARTED="" JOBS=()
cleanup() {
  local rc=$?
  set +e
  for j in "${JOBS[@]}"; do scancel "$j" 2>/dev/null; done
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill "${PIDS[i]}" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
  if [[ -n $MUNGED_STARTED && -s $TMP/munged.pid ]]; then
    local mp; mp=$(cat "$TMP/munged.pid")
    kill "$mp" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$mp" 2>/dev/null || break; sleep 0.1; done # not our child: no wait
  fi
  if ((rc != 0)); then
    for f in "$TMP"/slurmctld.log "$TMP"/slurmd.log "$TMP"/logs/*; do
      [[ -s $f ]] && { echo "--- $f (last 30 lines)"; tail -n 30 "$f"; }
    done
  fi
  if [[ ${SLURM_TEST_KEEP:-} == 1 ]]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- 2. munge
KEY=/etc/munge/munge.key
if [[ ! -s $KEY ]]; then
  say "creating $KEY"
  mkdir -p /etc/munge
  dd if=/dev/urandom of="$KEY" bs=1024 count=1 status=none
fi
chown munge:munge "$KEY"; chmod 0400 "$KEY"
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  say "munged already running"
else
  say "starting munged"
  for d in /run/munge /var/lib/munge /var/log/munge; do mkdir -p "$d"; chown munge:munge "$d"; done
  chmod 0755 /run/munge
  rm -f /run/munge/munged.pid
  runuser -u munge -- /usr/sbin/munged || die "munged did not start: $(tail -n 5 /var/log/munge/munged.log 2>/dev/null)"
  MUNGED_STARTED=1
  for _ in $(seq 50); do [[ -s /run/munge/munged.pid ]] && break; sleep 0.1; done
  cp /run/munge/munged.pid "$TMP/munged.pid"
  munge -n | unmunge >/dev/null || die "munge does not work"
fi

# ---- 3. slurm
HOST=$(hostname -s)
CPUS=$(nproc)
MEM=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo) # MB, below what slurmd finds
free_port() {
  local p
  for _ in $(seq 100); do
    p=$((20000 + RANDOM % 20000))
    (: < "/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; } # nothing answers there
  done
  die "no free port"
}
CTLD_PORT=$(free_port); SLURMD_PORT=$(free_port)
while [[ $SLURMD_PORT == "$CTLD_PORT" ]]; do SLURMD_PORT=$(free_port); done
mkdir -p "$TMP/state" "$TMP/spool" "$TMP/logs"
export SLURM_CONF=$TMP/slurm.conf # for the daemons and every client command
cat > "$SLURM_CONF" <<EOF
# written by scripts/slurm-test.sh: one node, this machine, on 127.0.0.1
ClusterName=haultest
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$TMP/state
SlurmdSpoolDir=$TMP/spool
SlurmctldPidFile=$TMP/slurmctld.pid
SlurmdPidFile=$TMP/slurmd.pid
SlurmctldLogFile=$TMP/slurmctld.log
SlurmdLogFile=$TMP/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
InactiveLimit=0
# SIGTERM, then SIGKILL this many seconds later
KillWait=15
# keep finished jobs' records, to read their exit codes
MinJobAge=600
NodeName=$HOST NodeAddr=127.0.0.1 NodeHostname=$HOST CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=haul Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
say "starting slurmctld (port $CTLD_PORT) and slurmd (port $SLURMD_PORT) for node $HOST, $CPUS CPUs"
slurmctld -D -c -f "$SLURM_CONF" > "$TMP/slurmctld.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.1; done
scontrol ping | grep -q UP || die "slurmctld is not up: $(tail -n 20 "$TMP/slurmctld.log" "$TMP/slurmctld.out")"
slurmd -D -f "$SLURM_CONF" -N "$HOST" > "$TMP/slurmd.out" 2>&1 &
PIDS+=($!)
for _ in $(seq 300); do
  state=$(sinfo -h -N -n "$HOST" -o '%t' 2>/dev/null || true)
  [[ $state == idle ]] && break
  sleep 0.1
done
[[ $state == idle ]] || die "node $HOST is '${state}', not idle: $(tail -n 20 "$TMP/slurmd.log" "$TMP/slurmd.out")"
sinfo
echo "cluster up in $(since "$T0") s"

# ---- 4. haul and the server
say "building haul and scripts/slurmcheck"
(cd "$ROOT" && go build -o "$TMP/bin/haul" ./cmd/haul && go build -o "$TMP/bin/slurmcheck" ./scripts/slurmcheck)
CHECK=$TMP/bin/slurmcheck
# serve NAME ARGS...: starts a server in $TMP/NAME, sets BASE
serve() {
  local name=$1; shift
  mkdir -p "$TMP/$name"
  "$CHECK" serve -dir "$TMP/$name/www" -list "$TMP/$name/list.txt" -log "$TMP/$name/requests.jsonl" "$@" \
    > "$TMP/$name/url" 2> "$TMP/$name/server.log" < /dev/null &
  PIDS+=($!)
  for _ in $(seq 300); do [[ -s $TMP/$name/url ]] && break; sleep 0.1; done
  BASE=$(head -n 1 "$TMP/$name/url")
  [[ $BASE == http://127.0.0.1:* ]] || die "the server printed no URL: $(cat "$TMP/$name/server.log")"
}
# task_state JOB: "K STATE EXIT" per array task
task_states() {
  scontrol -o show job "$1" | sed -E 's/.*ArrayTaskId=([0-9]+) .*JobState=([A-Z_]+) .*ExitCode=([0-9:]+).*/\1 \2 \3/' | sort -n
}
# submit NAME [sbatch options]: the array over $TMP/NAME's list into $TMP/NAME/out, in the
# background with --wait; sets JOB and WAITPID
submit() {
  local name=$1; shift
  mkdir -p "$TMP/$name/out"
  HAUL_LIST=$TMP/$name/list.txt HAUL_DIR=$TMP/$name/out HAUL=$TMP/bin/haul \
    sbatch --wait --parsable --chdir "$TMP/$name" --output "$TMP/logs/$name-%A_%a.out" "$@" "$SBATCH_SCRIPT" \
      -j 4 --progress plain --progress-interval 1s > "$TMP/$name/sbatch.out" 2>&1 &
  WAITPID=$!
  for _ in $(seq 100); do JOB=$(head -n 1 "$TMP/$name/sbatch.out" | tr -dc 0-9); [[ -n $JOB ]] && break; sleep 0.1; done
  [[ -n $JOB ]] || die "sbatch: $(cat "$TMP/$name/sbatch.out")"
  JOBS+=("$JOB")
}

# ---- 5. run 1: the array, as a user would run it
serve run1 -gen "$FILES" -min 1 -max $((128 << 10))
say "run 1: sbatch --wait $SBATCH_SCRIPT (array 0-3) over $FILES files from $BASE"
t=$(date +%s.%N)
submit run1
rc=0; wait "$WAITPID" || rc=$?
RUN1_S=$(since "$t")
task_states "$JOB"
((rc == 0)) || die "run 1: sbatch --wait exited $rc: $(cat "$TMP/run1/sbatch.out")"
[[ $(task_states "$JOB" | grep -c ' COMPLETED 0:0$') == 4 ]] || die "run 1: not every task COMPLETED with exit 0"
grep -h 'shard [0-9]/4' "$TMP"/logs/run1-* | sed 's/^/  /'
RUN1=$("$CHECK" check -list "$TMP/run1/list.txt" -dir "$TMP/run1/out" -log "$TMP/run1/requests.jsonl" -shards 4) ||
  die "run 1: the check failed"
echo "run 1: 4 tasks, $RUN1, $RUN1_S s"

# ---- 6. run 2: task 1 requeued mid-download, against a slow server
FILES2=$((FILES * 2 / 5))
serve run2 -gen "$FILES2" -min $((96 << 10)) -max $((512 << 10)) -rate $((1 << 20))
say "run 2: the same array over $FILES2 files served at 1 MiB/s per response; task 1 requeued mid-download"
t=$(date +%s.%N)
submit run2
for _ in $(seq 600); do
  "$CHECK" partial -list "$TMP/run2/list.txt" -dir "$TMP/run2/out" -shard 1/4 && break
  sleep 0.1
done
"$CHECK" partial -list "$TMP/run2/list.txt" -dir "$TMP/run2/out" -shard 1/4 || die "run 2: task 1 never had a partial file"
sleep 0.5 # a few files finished too
scontrol requeuehold "${JOB}_1"
for _ in $(seq 300); do
  st=$(task_states "$JOB" | awk '$1 == 1 {print $2}')
  [[ $st == PENDING ]] && break
  sleep 0.1
done
[[ $st == PENDING ]] || die "run 2: task 1 is $st after scontrol requeuehold, not PENDING"
"$CHECK" snapshot -list "$TMP/run2/list.txt" -dir "$TMP/run2/out" -log "$TMP/run2/requests.jsonl" -shard 1/4 > "$TMP/run2/snapshot.json"
echo "task 1 requeued (held): $(grep -c . "$TMP/run2/out/manifest-1.jsonl" 2>/dev/null || echo 0) manifest lines;" \
  "its first run said: $(grep -h 'interrupted' "$TMP"/logs/run2-*_1.out | tail -n 1)"
scontrol release "${JOB}_1"
# A requeued job may not start before a delay Slurm sets (about two minutes): start it now.
scontrol update JobId="${JOB}_1" StartTime=now
rc=0; wait "$WAITPID" || rc=$?
RUN2_S=$(since "$t")
task_states "$JOB"
((rc == 0)) || die "run 2: sbatch --wait exited $rc: $(cat "$TMP/run2/sbatch.out")"
[[ $(task_states "$JOB" | grep -c ' COMPLETED 0:0$') == 4 ]] || die "run 2: not every task COMPLETED with exit 0"
grep -q 'restart 1' "$TMP"/logs/run2-*_1.out || die "run 2: task 1's log shows no restart"
RUN2=$("$CHECK" check -list "$TMP/run2/list.txt" -dir "$TMP/run2/out" -log "$TMP/run2/requests.jsonl" -shards 4 \
  -resumed "$TMP/run2/snapshot.json") || die "run 2: the check failed"
echo "run 2: 4 tasks, task 1 requeued once, $RUN2, $RUN2_S s"

say "PASS: slurm-test in $(since "$T0") s"

#!/usr/bin/env bash
# tar.sh: small files into WebDataset tar shards against a file each, on setup.sh's nginx.
#   tar:   haul -q -j C -i LIST -d OUT --tar            (samples KEY.bin + KEY.json in OUT/00000.tar, ...)
#   files: haul -q -j C -i LIST -d OUT                  (a file each, at the line's out=)
# Both durable (neither has --no-sync). The list: N (100,000) URLs of the small workload's files
# (10,000 x 4 KiB), line i fetching small/dNN/fNNNN.bin (NNNN = i mod 10,000) with "?r=R" (R = i div
# 10,000) so that every URL is its own entry, and out=rR/dNN/fNNNN.bin for the files mode (--tar
# ignores out=). Kept in $LISTS/tar-nN.* for the next run.
# Each run writes into a new directory under a `chattr +T` parent (see README.md), BENCH_RUNS
# rounds, the first mode alternating. A run counts only if it is verified: the tar run's finished
# tars (no .tar.part left) hold exactly N samples, each a KEY.bin and a KEY.json, whose bodies'
# sha256, as a multiset, equal the list's, and GNU tar lists every member; the files run wrote N
# files whose sha256 multiset equals the list's. A failed check stops the script (exit 1) and keeps
# the run's directory and log. The table: medians of wall, files/s, CPU, peak RSS (lib.sh's
# table), then files/s tar / files.
# Env: N (100000), C (64), TAR_SIZE (--tar-size, 1G), HAUL (a haul binary; default: built from
#      this clone), HAUL_OPTS (more haul flags, both modes), BENCH_RUNS (3), BENCH_TIMEOUT (3600 s).
set -euo pipefail
# shellcheck source=scripts/bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N=${N:-100000}
C=${C:-64}
R=${BENCH_RUNS:-3}
TO=${BENCH_TIMEOUT:-3600}
TAR_SIZE=${TAR_SIZE:-1G}
[[ $N =~ ^[1-9][0-9]*$ ]] || die "N must be a whole number >= 1"
[[ $C =~ ^[1-9][0-9]*$ ]] || die "bad concurrency C=$C"
[[ $R =~ ^[1-9][0-9]*$ ]] || die "bad BENCH_RUNS $R"
nginx_running || die "nginx is not running: run scripts/bench/setup.sh"
[[ -s $MANIFEST ]] || die "no dataset in $WWW: run scripts/bench/setup.sh"
command -v "$BENCH_PY" > /dev/null || die "$BENCH_PY not found (it reads the tars back)"
command -v tar > /dev/null || die "tar not found"

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/haul-tarbench.XXXXXX")
if [[ -z ${HAUL:-} ]]; then
  GO=$(go_bin) || die "go not found (set HAUL to a haul binary, or install Go to build it)"
  log "building haul from $ROOT"
  (cd "$ROOT" && "$GO" build -o "$SCRATCH/haul" ./cmd/haul)
  HAUL=$SCRATCH/haul
fi
[[ -x $HAUL ]] || die "HAUL=$HAUL is not executable"
read -r -a HOPTS <<< "${HAUL_OPTS:-}"

# ---------------------------------------------------------------- the list (kept for the next run)
L=tar-n$N
STAMP="$(sha256sum "$MANIFEST" | cut -c1-16) $L"
if [[ $(cat "$LISTS/$L.ok" 2> /dev/null) != "$STAMP" ]]; then
  log "writing the list $LISTS/$L.* ($N URLs of the small files)"
  awk -v n="$N" -v b="$BASE_URL" 'BEGIN {
    for (i = 0; i < n; i++) {
      f = i % 10000; r = int(i / 10000); p = sprintf("small/d%02d/f%04d.bin", int(f / 100), f)
      printf "%s/%s?r=%d %s r%d/d%02d/f%04d.bin\n", b, p, r, p, r, int(f / 100), f
    } }' | make_lists "$L"
  awk '{print $2 " out=" $1}' "$LISTS/$L.pairs" > "$LISTS/$L.haul"   # URL out=PATH, as haul reads it
  echo "$STAMP" > "$LISTS/$L.ok"
fi
BYTES=$(cat "$LISTS/$L.bytes")

# ---------------------------------------------------------------- runs
OUTROOT=$BENCH_DIR/out-tar
TOOLS=(tar files)   # lib.sh's table lists them in this order
TAG=tar-n$N-c$C-$(date +%Y%m%dT%H%M%S)
TSV=$RESULTS/$TAG.tsv
mkdir -p "$RESULTS/logs"
fresh_parent "$OUTROOT"
printf 'tool\trun\tstatus\trc\twall_s\tuser_s\tsys_s\tmaxrss_kb\tsrv_cpu_s\tfiles\tmissing\textra\n' > "$TSV"

CUR=() TOOL_PID=""
cleanup() {
  cleanup_run   # lib.sh: stops a run under way, removes CUR
  rm -rf "$SCRATCH"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mode_cmd() { # mode_cmd MODE OUT: CMD for one run
  CMD=("$HAUL" -q -i "$LISTS/$L.haul" -d "$2" -j "$C" "${HOPTS[@]}")
  if [[ $1 == tar ]]; then CMD+=(--tar --tar-size "$TAR_SIZE"); fi
}

# check_tar OUT GOT: prints "samples missing extra" for the tars in OUT, the bodies' sorted sha256
# into GOT; a line on stderr and exit 1 for anything a tar must not hold
check_tar() {
  "$BENCH_PY" - "$1" "$2" << 'EOF'
import collections, glob, hashlib, json, os, re, sys, tarfile
out, got = sys.argv[1], sys.argv[2]
bad = []
part = glob.glob(os.path.join(out, "*.part"))
if part:
    bad.append("unfinished tars left: " + " ".join(sorted(part)))
tars = sorted(glob.glob(os.path.join(out, "[0-9]*.tar")))
if not tars:
    bad.append("no tar in " + out)
members = collections.defaultdict(list)
shas = []
for t in tars:
    with tarfile.open(t) as tf:
        for m in tf:
            if not m.isfile():
                bad.append(f"{t}: {m.name} is not a regular file")
                continue
            key, _, ext = m.name.partition(".")
            members[key].append(ext)
            data = tf.extractfile(m).read()
            if len(data) != m.size:
                bad.append(f"{t}: {m.name} is cut short")
            if ext == "bin":
                shas.append(hashlib.sha256(data).hexdigest())
            elif ext == "json":
                j = json.loads(data)
                if j.get("key") != key or j.get("http_status") != 200:
                    bad.append(f"{t}: {m.name} says {j}")
            else:
                bad.append(f"{t}: unexpected member {m.name}")
for key, exts in members.items():
    if sorted(exts) != ["bin", "json"] or not re.fullmatch(r"[0-9]{9}", key):
        bad.append(f"sample {key}: members {sorted(exts)}")
        if len(bad) > 20:
            break
shas.sort()
with open(got, "w") as f:
    f.writelines(s + "\n" for s in shas)
for b in bad[:20]:
    print(b, file=sys.stderr)
print(len(members), len(tars))
sys.exit(1 if bad else 0)
EOF
}

# run_mode MODE ROUND: one verified run, a row in $TSV; dies on a failed check
run_mode() {
  local m=$1 r=$2 out=$OUTROOT/$TAG.$1.$2 tf=$OUTROOT/$TAG.$1.time got=$OUTROOT/$TAG.$1.got
  local lf=$RESULTS/logs/$TAG.$1.$2.log rc=0 s0 s1 wall usr sys rss files=0 miss extra ntars="" why=""
  CUR=("$out" "$tf" "$got")
  rm -rf "$out"; mkdir -p "$out"; sync
  mode_cmd "$m" "$out"
  s0=$(workers_ticks "$NGINX_PID")
  /usr/bin/time -f '%e %U %S %M' -o "$tf" timeout -k 5 "$TO" "${CMD[@]}" < /dev/null > "$lf" 2>&1 &
  TOOL_PID=$!
  wait "$TOOL_PID" || rc=$?
  TOOL_PID=""
  s1=$(workers_ticks "$NGINX_PID")
  read -r wall usr sys rss < <(tail -n 1 "$tf")
  if [[ $m == tar ]]; then
    local res
    if res=$(check_tar "$out" "$got" 2>> "$lf"); then :; else why="the tars do not hold what the list names"; fi
    read -r files ntars <<< "$res"
    local listed
    listed=$(find "$out" -maxdepth 1 -name '[0-9]*.tar' -exec tar -tf {} \; | wc -l)
    ((listed == 2 * N)) || why=${why:-"tar -t lists $listed members, not $((2 * N))"}
  else
    hash_tree "$out" > "$got"
    files=$(wc -l < "$got")
  fi
  miss=$(LC_ALL=C comm -23 "$LISTS/$L.sha" "$got" | wc -l)
  extra=$(LC_ALL=C comm -13 "$LISTS/$L.sha" "$got" | wc -l)
  if ((rc == 124 || rc == 137)); then why="timed out after $TO s"
  elif ((rc != 0)); then why="haul exited $rc"
  elif ((files != N)); then why=${why:-"$files samples or files, not $N"}
  elif ((miss || extra)); then why=${why:-"$miss bodies missing, $extra not in the list"}
  fi
  local status=ok
  [[ -z $why ]] || status=FAILED
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$m" "$r" "$status" "$rc" "$wall" \
    "$usr" "$sys" "$rss" "$(ticks_s "$s0" "$s1")" "$files" "$miss" "$extra" >> "$TSV"
  log "$TAG run $r/$R $m: ${wall}s $status (rc=$rc samples/files=$files${ntars:+ in $ntars tars} missing=$miss extra=$extra)"
  if [[ -n $why ]]; then
    CUR=()   # keep them for a look
    die "$m run $r: $why; its directory: $out, haul's output: $lf"
  fi
  [[ -s $lf ]] || rm -f "$lf"
  rm -rf "$out" "$got" "$tf"
  CUR=()
}

echo "== tar: $N small files ($BYTES bytes) from $BASE_URL, -j $C, --tar-size $TAR_SIZE, runs=$R  $(date '+%F %T')  load: $(cut -d' ' -f1-3 /proc/loadavg)"
for m in "${TOOLS[@]}"; do
  mode_cmd "$m" OUT
  printf '   %-6s %s\n' "$m" "$(echo "${CMD[*]}" | sed "s|$BENCH_DIR|\$BENCH_DIR|g; s|$SCRATCH/||g")"
done
for ((r = 1; r <= R; r++)); do
  if ((r % 2)); then order=(tar files); else order=(files tar); fi
  for m in "${order[@]}"; do run_mode "$m" "$r"; done
done
sync
echo
table "$N" "$BYTES"
awk -F'\t' -v n="$N" '
  NR > 1 && $3 == "ok" { w[$1, ++k[$1]] = $5 }
  function med(t,   i, j, x, a, c) {
    c = k[t]; for (i = 1; i <= c; i++) a[i] = w[t, i]
    for (i = 2; i <= c; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
    return (c % 2) ? a[(c + 1) / 2] : (a[c / 2] + a[c / 2 + 1]) / 2
  }
  END { t = med("tar"); f = med("files")
        printf "files/s tar / files: %.2f (%.0f / %.0f files/s)\n", f / t, n / t, n / f }' "$TSV"
raw_line "both durable; srv% = nginx worker CPU / wall"

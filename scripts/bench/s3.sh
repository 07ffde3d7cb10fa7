#!/usr/bin/env bash
# s3.sh [small] [big]: from setup.sh's nginx straight into an S3 bucket (versitygw on 127.0.0.1,
# its POSIX backend), haul against what people do today, and against the store's own ingest limit.
#   haul        haul -q -i LIST -d s3://BUCKET/data --s3-endpoint URL -j C      (credentials from the environment)
#   s5cmd-pipe  curl -s URL | s5cmd pipe s3://BUCKET/data/KEY, a process pair per file, C at a time (xargs -P C)
#   rclone-url  rclone copyurl URL :s3:BUCKET/data/KEY, a process per file, C at a time (xargs -P C)
#   s5cmd-cp    s5cmd cp 'DIR/*' s3://BUCKET/data/: the same files from the local disk (page cache),
#               with s5cmd's own concurrency (256 workers, 5 parts at once per file): the rate at
#               which this store takes objects at all, with no HTTP source in front
# Workloads (both by default): small, SMALL_N (10,000) files of SMALL_SIZE (4K) in directories of 100;
# big, BIG_N (4) files of BIG_SIZE (256M). Their bytes (AES-CTR keystreams, the same on every
# machine) are written once under $BENCH_DIR/www/s3/ and served by setup.sh's nginx; a key is
# data/ + the file's path there (d000/f00000.bin, b0.bin), the same for every tool.
# One versitygw serves every run; each run writes into a new bucket, a directory of its own in a
# `chattr +T` parent (see README.md), removed after the run. A run counts only if the tool exited 0
# and the store then lists exactly the expected keys with the expected sizes (nothing more: no
# upload left in progress, no resume record), and the bodies of S3_SAMPLE (8) objects spread over
# the list, read back with GET, have the expected sha256; otherwise it is FAILED (its output and
# the differences in results/logs/) and left out of the medians. A peer that is not installed, or
# whose runs fail, is said so; the others go on.
# Each run: wall, user+sys CPU of the tool and its children, peak RSS of its largest process
# (/usr/bin/time; the per-file peers run C processes at once, each with that much at most), nginx's
# CPU (srv%) and versitygw's (gw%) over the wall, neither counted in the tool's CPU. BENCH_RUNS
# rounds, the first tool rotating; the table of medians, then haul's wall and CPU over each peer's.
# `s3.sh install` installs s5cmd (and versitygw, when it is nowhere) into $BENCH_DIR/bin; a run
# tries that itself when s5cmd is missing (setup.sh calls it).
# Env: C (16), SMALL_N, SMALL_SIZE, BIG_N, BIG_SIZE (sizes in bytes or with K/M/G), S3_SAMPLE (8),
#      S3_PORT (18900), HAUL (a haul binary; default: built from this clone), HAUL_OPTS (more haul
#      flags), BENCH_TOOLS (a subset of "haul s5cmd-pipe rclone-url s5cmd-cp"), BENCH_RUNS (3),
#      BENCH_TIMEOUT (3600 s a run), HAUL_VERSITYGW (the versitygw binary; default: PATH,
#      $BENCH_DIR/bin, $(go env GOPATH)/bin), S5CMD (the s5cmd binary; found the same way).
set -euo pipefail
# shellcheck source=scripts/bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

S5CMD_VERSION=v2.3.0        # s5cmd's release of 2024-12; builds with Go 1.26
VERSITYGW_VERSION=v1.8.0    # the one the tests use (internal/s3test)
S3_PORT=${S3_PORT:-18900}
S3_EP=http://$BENCH_HOST:$S3_PORT
S3_ACCESS=haulbenchroot
S3_SECRET=haulbenchroot-secret-key
S3_REGION=us-east-1
S3_PREFIX=data
STORE=$BENCH_DIR/s3-store                 # versitygw's POSIX root: one directory per bucket
GW_PID_FILE=$BENCH_DIR/s3-versitygw.pid
GW_LOG=$BENCH_DIR/s3-versitygw.log
S3_WWW=$WWW/s3                            # the workloads' files, served as $BASE_URL/s3/...
DATA_VERSION=haul-s3-bench-1

# ---------------------------------------------------------------- finding and installing the programs
# find_bin NAME: NAME in PATH, else in $BENCH_DIR/bin, else in $(go env GOPATH)/bin
find_bin() {
  local p go gp d
  if p=$(command -v "$1" 2> /dev/null); then echo "$p"; return; fi
  if [[ -x $BENCH_DIR/bin/$1 ]]; then echo "$BENCH_DIR/bin/$1"; return; fi
  go=$(go_bin) || return 1
  gp=$("$go" env GOPATH 2> /dev/null) || return 1
  IFS=: read -r -a gp <<< "$gp"
  for d in "${gp[@]}"; do
    if [[ -x $d/bin/$1 ]]; then echo "$d/bin/$1"; return; fi
  done
  return 1
}

# go_install MODULE PACKAGE VERSION NAME: PACKAGE@VERSION built into $BENCH_DIR/bin/NAME
go_install() {
  local go tmp rc=0
  go=$(go_bin) || { log "go not found: cannot install $4"; return 1; }
  mkdir -p "$BENCH_DIR/bin"
  log "installing $4 ($2@$3) into $BENCH_DIR/bin"
  if GOBIN=$BENCH_DIR/bin GOFLAGS=-mod=mod "$go" install "$2@$3" 2> "$BENCH_DIR/bin/$4.install.log"; then
    [[ -x $BENCH_DIR/bin/$4 ]] || mv "$BENCH_DIR/bin/$(basename "$2")" "$BENCH_DIR/bin/$4"
    rm -f "$BENCH_DIR/bin/$4.install.log"
    return 0
  fi
  # `go install PKG@VERSION` also asks the proxy for the module's list of versions (to warn of a
  # deprecation); a proxy that refuses the list fails it. A throwaway module that requires that
  # version builds the same program from the same module graph.
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/haul-s3bench-build.XXXXXX")
  (cd "$tmp" && "$go" mod init s3bench.invalid/build > /dev/null 2>&1 &&
     printf 'require %s %s\n' "$1" "$3" >> go.mod &&
     GOFLAGS=-mod=mod "$go" build -o "$BENCH_DIR/bin/$4" "$2") >> "$BENCH_DIR/bin/$4.install.log" 2>&1 || rc=$?
  rm -rf "$tmp"
  if ((rc)); then log "installing $4 failed: see $BENCH_DIR/bin/$4.install.log"; return 1; fi
  rm -f "$BENCH_DIR/bin/$4.install.log"
}

install_s5cmd() { go_install github.com/peak/s5cmd/v2 github.com/peak/s5cmd/v2 "$S5CMD_VERSION" s5cmd; }
versitygw_bin() { if [[ -n ${HAUL_VERSITYGW:-} ]]; then echo "$HAUL_VERSITYGW"; else find_bin versitygw; fi; }
install_versitygw() {
  go_install github.com/versity/versitygw github.com/versity/versitygw/cmd/versitygw "$VERSITYGW_VERSION" versitygw
}

if [[ ${1:-} == install ]]; then
  # s5cmd at its pinned version unless one is found; versitygw only when it is nowhere (its
  # first build takes minutes)
  if S5=$(find_bin s5cmd); then log "s5cmd: $S5"; else install_s5cmd; fi
  if GW=$(versitygw_bin) && [[ -x $GW ]]; then log "versitygw: $GW"; else install_versitygw; fi
  exit 0
fi

# ---------------------------------------------------------------- arguments and checks
WLS=()
for a in "$@"; do
  case $a in
    small|big) WLS+=("$a") ;;
    -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
    *) die "unknown argument $a (s3.sh [small] [big], or s3.sh install)" ;;
  esac
done
((${#WLS[@]})) || WLS=(small big)

bytes_of() { # bytes_of NAME VALUE: VALUE (4096, 4K, 256M, 1G) in bytes, or die naming NAME
  local v
  if ! v=$(numfmt --from=iec "$2" 2> /dev/null) || [[ ! $v =~ ^[1-9][0-9]*$ ]]; then
    die "$1=$2: want a size (4096, 4K, 256M)"
  fi
  echo "$v"
}
C=${C:-16}
R=${BENCH_RUNS:-3}
TO=${BENCH_TIMEOUT:-3600}
SMALL_N=${SMALL_N:-10000}
SMALL_SIZE=$(bytes_of SMALL_SIZE "${SMALL_SIZE:-4K}")
BIG_N=${BIG_N:-4}
BIG_SIZE=$(bytes_of BIG_SIZE "${BIG_SIZE:-256M}")
S3_SAMPLE=${S3_SAMPLE:-8}
[[ $C =~ ^[1-9][0-9]*$ ]] || die "bad concurrency C=$C"
[[ $R =~ ^[1-9][0-9]*$ ]] || die "bad BENCH_RUNS $R"
[[ $TO =~ ^[1-9][0-9]*$ ]] || die "bad BENCH_TIMEOUT $TO"
[[ $SMALL_N =~ ^[1-9][0-9]*$ ]] || die "SMALL_N must be a whole number >= 1"
[[ $BIG_N =~ ^[1-9][0-9]*$ ]] || die "BIG_N must be a whole number >= 1"
[[ $S3_SAMPLE =~ ^[0-9]+$ ]] || die "S3_SAMPLE must be a whole number"
nginx_running || die "nginx is not running: run scripts/bench/setup.sh"
for b in curl openssl sha256sum xargs numfmt; do command -v "$b" > /dev/null || die "$b not found"; done
[[ -x /usr/bin/time ]] || die "/usr/bin/time not found (Debian's package time)"
GW_BIN=$(versitygw_bin || true)
[[ -n $GW_BIN && -x $GW_BIN ]] ||
  die "versitygw not found (HAUL_VERSITYGW, PATH, \$BENCH_DIR/bin, \$(go env GOPATH)/bin): scripts/bench/s3.sh install"

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/haul-s3bench.XXXXXX")
GW_PID=""
cleanup() {
  cleanup_run   # lib.sh: stops a run under way, removes CUR
  if [[ -n $GW_PID ]]; then
    kill "$GW_PID" 2> /dev/null || true
    wait "$GW_PID" 2> /dev/null || true
    rm -f "$GW_PID_FILE"
    rm -rf "$STORE"
  fi
  rm -rf "$SCRATCH"
}
CUR=() TOOL_PID=""
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -z ${HAUL:-} ]]; then
  GO=$(go_bin) || die "go not found (set HAUL to a haul binary, or install Go to build it)"
  log "building haul from $ROOT"
  (cd "$ROOT" && "$GO" build -o "$SCRATCH/haul" ./cmd/haul)
  HAUL=$SCRATCH/haul
fi
[[ -x $HAUL ]] || die "HAUL=$HAUL is not executable"
read -r -a HOPTS <<< "${HAUL_OPTS:-}"

# the peers: found, else s5cmd installed now; one missing is said so and left out
S5CMD=${S5CMD:-$(find_bin s5cmd || true)}
if [[ -z $S5CMD ]] && install_s5cmd; then S5CMD=$BENCH_DIR/bin/s5cmd; fi
RCLONE=$(command -v rclone || true)
declare -A WHY_NOT=()
[[ -n $S5CMD ]] || WHY_NOT[s5cmd-pipe]="s5cmd not installed (scripts/bench/s3.sh install)"
[[ -n $S5CMD ]] || WHY_NOT[s5cmd-cp]="s5cmd not installed (scripts/bench/s3.sh install)"
[[ -n $RCLONE ]] || WHY_NOT[rclone-url]="rclone not installed (Debian's package rclone)"
TOOLS=()
read -r -a wanted <<< "${BENCH_TOOLS:-haul s5cmd-pipe rclone-url s5cmd-cp}"
for t in "${wanted[@]}"; do
  case $t in haul|s5cmd-pipe|rclone-url|s5cmd-cp) ;; *) die "unknown tool $t (haul s5cmd-pipe rclone-url s5cmd-cp)" ;; esac
  if [[ -n ${WHY_NOT[$t]:-} ]]; then echo "   $t: ${WHY_NOT[$t]}, skipped"; else TOOLS+=("$t"); fi
done
((${#TOOLS[@]})) || die "no tool to run"

# Every tool gets the store's keys and region from the environment and nothing else of the
# caller's AWS settings: a profile, endpoint or AWS_CA_BUNDLE there would change what they do
# (rclone 1.60's S3 client refuses any AWS_CA_BUNDLE over its own transport).
while read -r v; do unset "$v"; done < <(compgen -e | grep '^AWS_' || true)
export AWS_ACCESS_KEY_ID=$S3_ACCESS AWS_SECRET_ACCESS_KEY=$S3_SECRET AWS_REGION=$S3_REGION
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null

# ---------------------------------------------------------------- the store
# s3 METHOD PATH[?QUERY] [CURL ARGS...]: a request to versitygw signed with its root keys (curl's
# SigV4). curl 7.88 signs the query as written: give its parameters sorted and percent-encoded.
EMPTY_SHA=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
s3() {
  local m=$1 p=$2; shift 2
  curl -q -sS --fail --max-time 600 -X "$m" --aws-sigv4 "aws:amz:$S3_REGION:s3" --user "$S3_ACCESS:$S3_SECRET" \
    -H "x-amz-content-sha256: $EMPTY_SHA" "$@" "$S3_EP$p"
}
enc() { # enc STRING: percent-encoded as S3 signs a query value
  local LC_ALL=C s=$1 o="" c i
  for ((i = 0; i < ${#s}; i++)); do
    c=${s:i:1}
    case $c in [A-Za-z0-9._~-]) o+=$c ;; *) printf -v c '%%%02X' "'$c"; o+=$c ;; esac
  done
  echo "$o"
}
# s3_list BUCKET PREFIX: "KEY<TAB>SIZE" of every object under PREFIX/, one a line
s3_list() {
  local after="" page q
  while :; do
    q="list-type=2&max-keys=1000&prefix=$(enc "$2/")"
    [[ -z $after ]] || q+="&start-after=$(enc "$after")"
    page=$(s3 GET "/$1?$q") || return 1
    awk 'BEGIN { RS = "<Contents>" } NR > 1 {
           k = $0; sub(/.*<Key>/, "", k); sub(/<\/Key>.*/, "", k); s = $0; sub(/.*<Size>/, "", s); sub(/<\/Size>.*/, "", s)
           gsub(/&lt;/, "<", k); gsub(/&gt;/, ">", k); gsub(/&#34;|&quot;/, "\"", k); gsub(/&#39;|&apos;/, "'\''", k); gsub(/&amp;/, "\\&", k)
           print k "\t" s }' <<< "$page" > "$SCRATCH/page"
    cat "$SCRATCH/page"
    grep -q '<IsTruncated>true</IsTruncated>' <<< "$page" || return 0
    [[ -s $SCRATCH/page ]] || return 1
    after=$(tail -n 1 "$SCRATCH/page" | cut -f 1)
  done
}
# s3_uploads BUCKET: how many multipart uploads are in progress in BUCKET
s3_uploads() {
  local page
  page=$(s3 GET "/$1?uploads=") || return 1
  { grep -o '<Upload>' <<< "$page" || true; } | wc -l
}

start_gw() {
  if pid_alive "$GW_PID_FILE" && grep -qa versitygw "/proc/$(cat "$GW_PID_FILE")/cmdline" 2> /dev/null; then
    log "stopping the versitygw a previous run left (pid $(cat "$GW_PID_FILE"))"
    kill "$(cat "$GW_PID_FILE")"; sleep 1
  fi
  ! curl -q -s -o /dev/null --max-time 1 "$S3_EP/" || die "something already answers on $S3_EP (set S3_PORT)"
  # the buckets of an interrupted run; then a fresh +T parent, so that each bucket's directory
  # starts in a fresh block group
  rm -rf "$STORE"
  fresh_parent "$STORE"
  ROOT_ACCESS_KEY_ID="" ROOT_SECRET_ACCESS_KEY="" "$GW_BIN" --quiet --access "$S3_ACCESS" --secret "$S3_SECRET" \
    --region "$S3_REGION" --port "$BENCH_HOST:$S3_PORT" posix "$STORE" > "$GW_LOG" 2>&1 < /dev/null &
  GW_PID=$!
  echo "$GW_PID" > "$GW_PID_FILE"
  local i
  # ready once it answers a request signed with its keys (a listing of its buckets)
  for ((i = 0; i < 300; i++)); do
    s3 GET / -o /dev/null 2> /dev/null && break
    kill -0 "$GW_PID" 2> /dev/null || die "versitygw exited: $(tail -n 5 "$GW_LOG")"
    sleep 0.1
  done
  ((i < 300)) || die "versitygw does not answer on $S3_EP after 30 s: see $GW_LOG"
  log "versitygw started (pid $GW_PID, $GW_BIN) on $S3_EP, its data in $STORE"
}
gw_ticks() { proc_ticks "$GW_PID"; }

# ---------------------------------------------------------------- the workloads' files
keystream() { # keystream NAME BYTES: BYTES deterministic, incompressible bytes named NAME
  head -c "$2" /dev/zero |
    openssl enc -aes-128-ctr -nosalt -K "$(printf 'haul-s3-bench %s' "$1" | sha256sum | cut -c1-32)" -iv 00000000000000000000000000000000
}
# make_workload W: sets N, SIZE, NAME, SRC (the files), L (the list's name in $LISTS) and writes,
# once, the files and $LISTS/L.expect ("data/KEY<TAB>SIZE<TAB>SHA256", sorted), L.haul (URL
# out=KEY), L.keys (KEY URL)
make_workload() {
  case $1 in
    small) N=$SMALL_N SIZE=$SMALL_SIZE ;;
    big) N=$BIG_N SIZE=$BIG_SIZE ;;
  esac
  NAME=$1-${N}x$SIZE SRC=$S3_WWW/$NAME L=s3-$NAME
  local stamp="$DATA_VERSION $NAME" tmp=$S3_WWW/.$NAME.new d k i
  if [[ $(cat "$S3_WWW/$NAME.ok" 2> /dev/null) != "$stamp" || ! -d $SRC ]]; then
    log "writing $N files of $SIZE bytes into $SRC"
    rm -rf "$tmp" "$SRC"; mkdir -p "$tmp"
    if [[ $1 == small ]]; then
      # 100 files a directory, each directory one stream: dDDD/fDDDKK.bin is file 100 x DDD + KK
      for ((d = 0; d * 100 < N; d++)); do
        k=$((N - d * 100 < 100 ? N - d * 100 : 100))
        mkdir "$tmp/$(printf d%03d "$d")"
        keystream "small-$SIZE-$d" $((k * SIZE)) |
          split -b "$SIZE" -a 2 -d --additional-suffix=.bin - "$tmp/$(printf 'd%03d/f%03d' "$d" "$d")"
      done
    else
      for ((i = 0; i < N; i++)); do keystream "big-$SIZE-$i" "$SIZE" > "$tmp/b$i.bin"; done
    fi
    mv "$tmp" "$SRC"
    echo "$stamp" > "$S3_WWW/$NAME.ok"   # beside SRC, not in it: s5cmd-cp copies all of SRC
  fi
  if [[ $(cat "$LISTS/$L.ok" 2> /dev/null) != "$stamp" ]]; then
    mkdir -p "$LISTS"
    (cd "$SRC" && find . -type f -name '*.bin' -printf '%P\t%s\n' | LC_ALL=C sort > "$SCRATCH/sizes" &&
       cut -f 1 "$SCRATCH/sizes" | xargs -r -n 256 sha256sum | awk '{print $2 "\t" $1}' | LC_ALL=C sort > "$SCRATCH/shas")
    LC_ALL=C join -t $'\t' "$SCRATCH/sizes" "$SCRATCH/shas" | awk -v p="$S3_PREFIX/" -F'\t' '{print p $0}' > "$LISTS/$L.expect"
    (($(wc -l < "$LISTS/$L.expect") == N)) || die "$SRC holds $(wc -l < "$LISTS/$L.expect") files, not $N: remove it"
    awk -F'\t' -v b="$BASE_URL/s3/$NAME/" -v p="$S3_PREFIX/" '{k = substr($1, length(p) + 1); print b k " out=" k}' \
      "$LISTS/$L.expect" > "$LISTS/$L.haul"
    awk -F'\t' -v b="$BASE_URL/s3/$NAME/" -v p="$S3_PREFIX/" '{k = substr($1, length(p) + 1); print k, b k}' \
      "$LISTS/$L.expect" > "$LISTS/$L.keys"
    echo "$stamp" > "$LISTS/$L.ok"
  fi
  local u
  u=$(head -n 1 "$LISTS/$L.haul" | cut -d' ' -f1)
  [[ $(curl -q -fsS "$u" | sha256sum | cut -d' ' -f1) == $(head -n 1 "$LISTS/$L.expect" | cut -f3) ]] ||
    die "nginx does not serve $u as written (is it serving $WWW?)"
  find "$SRC" -type f -exec cat {} + > /dev/null   # into the page cache, for nginx and s5cmd-cp
  BYTES=$((N * SIZE))
}

# ---------------------------------------------------------------- the tools' command lines
# tool_s3 TOOL BUCKET: CMD, TOOL's command line into s3://BUCKET/data/ (its per-file arguments in
# $SCRATCH/args, written here, before the clock starts)
tool_s3() {
  local t=$1 b=$2 args=$SCRATCH/args
  case $t in
    haul)
      CMD=("$HAUL" -q -i "$LISTS/$L.haul" -d "s3://$b/$S3_PREFIX" --s3-endpoint "$S3_EP" -j "$C" "${HOPTS[@]}") ;;
    s5cmd-pipe)
      # what s5cmd offers for an HTTP source: a curl piped into `s5cmd pipe` per file. C pairs at a
      # time (xargs -P C), haul's -j: the same number of files in flight; bash -o pipefail so that
      # a failed curl fails the file
      awk -v b="s3://$b/$S3_PREFIX/" '{print $2, b $1}' "$LISTS/$L.keys" > "$args"
      CMD=(xargs -a "$args" -P "$C" -L 1 bash -o pipefail -c
           "curl -q -sS --fail \"\$1\" | $(printf %q "$S5CMD") --log error --endpoint-url $S3_EP pipe \"\$2\"" _) ;;
    rclone-url)
      # rclone copyurl per file, C at a time (xargs -P C), haul's -j; an S3 remote given on the
      # command line (credentials from the environment), the bucket not checked nor created
      awk -v b=":s3:$b/$S3_PREFIX/" '{print $2, b $1}' "$LISTS/$L.keys" > "$args"
      CMD=(xargs -a "$args" -P "$C" -L 1 "$RCLONE" copyurl -q --config /dev/null --s3-provider Other --s3-env-auth
           --s3-endpoint "$S3_EP" --s3-region "$S3_REGION" --s3-no-check-bucket) ;;
    s5cmd-cp)
      # the ingest limit: the same files from the local disk, s5cmd's default concurrency
      CMD=("$S5CMD" --log error --endpoint-url "$S3_EP" cp "$SRC/*" "s3://$b/$S3_PREFIX/") ;;
  esac
}

# ---------------------------------------------------------------- one run
# verify BUCKET LOG: sets OBJS, MISS, EXTRA, UPLOADS, BADBODY; the differences go to LOG
verify() {
  local b=$1 lf=$2 got=$SCRATCH/got expf=$SCRATCH/want
  OBJS=0 MISS=0 EXTRA=0 UPLOADS=0 BADBODY=0
  cut -f 1,2 "$LISTS/$L.expect" > "$expf"
  if ! s3_list "$b" "$S3_PREFIX" 2>> "$lf" | LC_ALL=C sort > "$got"; then
    echo "listing s3://$b/$S3_PREFIX/ failed" >> "$lf"; MISS=$N; return
  fi
  OBJS=$(wc -l < "$got")
  MISS=$(LC_ALL=C comm -23 "$expf" "$got" | wc -l)
  EXTRA=$(LC_ALL=C comm -13 "$expf" "$got" | wc -l)
  if ((MISS || EXTRA)); then
    # the first 20 of each (awk reads on: no SIGPIPE into the pipeline's status)
    { echo "-- expected, not listed (key, size):"; LC_ALL=C comm -23 "$expf" "$got" | awk 'NR <= 20'
      echo "-- listed, not expected (key, size):"; LC_ALL=C comm -13 "$expf" "$got" | awk 'NR <= 20'; } >> "$lf"
  fi
  if ! UPLOADS=$(s3_uploads "$b" 2>> "$lf"); then UPLOADS=-1; echo "listing the uploads of $b failed" >> "$lf"; fi
  ((UPLOADS == 0)) || echo "$UPLOADS multipart uploads left in progress" >> "$lf"
  # the bodies of S3_SAMPLE objects spread over the list (the first and the last among them)
  local n=$S3_SAMPLE key sum want_sum
  ((n <= N)) || n=$N
  while IFS=$'\t' read -r key _ want_sum; do
    sum=$(s3 GET "/$b/$key" 2>> "$lf" | sha256sum | cut -d' ' -f1) || sum="(GET failed)"
    [[ $sum == "$want_sum" ]] || { BADBODY=$((BADBODY + 1)); echo "s3://$b/$key: sha256 $sum, want $want_sum" >> "$lf"; }
  done < <(awk -v n="$n" -v N="$N" 'BEGIN { for (i = 0; i < n; i++) pick[n == 1 ? 1 : int(i * (N - 1) / (n - 1) + 0.5) + 1] }
                                     FNR in pick' "$LISTS/$L.expect")
}

# run_s3 W TOOL ROUND: one run into a new bucket, verified; a row in $TSV
run_s3() {
  local w=$1 t=$2 r=$3 b=$1-$2-$3 tf=$SCRATCH/time lf=$RESULTS/logs/$TAG.$2.$3.log
  local rc=0 s0 s1 g0 g1 wall usr sys rss status why=""
  CUR=("$STORE/$b")
  s3 PUT "/$b" -o /dev/null || die "cannot make the bucket $b: see $GW_LOG"
  tool_s3 "$t" "$b"
  : > "$lf"
  sync
  s0=$(workers_ticks "$NGINX_PID") g0=$(gw_ticks)
  # in the background and waited for, so that a signal reaches the script's trap at once
  /usr/bin/time -f '%e %U %S %M' -o "$tf" timeout -k 5 "$TO" "${CMD[@]}" < /dev/null >> "$lf" 2>&1 &
  TOOL_PID=$!
  wait "$TOOL_PID" || rc=$?
  TOOL_PID=""
  s1=$(workers_ticks "$NGINX_PID") g1=$(gw_ticks)
  read -r wall usr sys rss < <(tail -n 1 "$tf")
  verify "$b" "$lf"
  if ((rc == 124 || rc == 137)); then status=TIMEOUT why="timed out after $TO s"; SKIP[$t]=1
  elif ((rc != 0)); then why="exited $rc"
  elif ((MISS || EXTRA)); then why="$MISS objects missing or of the wrong size, $EXTRA not expected"
  elif ((UPLOADS != 0)); then why="$UPLOADS multipart uploads left in progress"
  elif ((BADBODY)); then why="$BADBODY of the sampled bodies differ"
  fi
  status=${status:-ok}
  [[ -z $why || $status != ok ]] || status=FAILED
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$r" "$status" "$rc" "$wall" "$usr" "$sys" \
    "$rss" "$(ticks_s "$s0" "$s1")" "$(ticks_s "$g0" "$g1")" "$OBJS" "$MISS" "$EXTRA" "$UPLOADS" "$BADBODY" >> "$TSV"
  log "$TAG run $r/$R $t: ${wall}s $status (rc=$rc objects=$OBJS missing=$MISS extra=$EXTRA uploads=$UPLOADS bad_bodies=$BADBODY)"
  if [[ -n $why ]]; then
    log "   $t run $r FAILED: $why; its output: $lf"
    FAILS+=("$w $t run $r: $why")
  elif [[ ! -s $lf ]]; then
    rm -f "$lf"
  fi
  rm -rf "${STORE:?}/$b" "$SCRATCH/args" "$tf"
  sync   # the bucket's removal written back before the next run
  CUR=()
}

# ratios: haul's median wall and CPU over each other tool's (verified runs only)
ratios() {
  awk -F'\t' -v order="${TOOLS[*]}" '
    NR > 1 && $3 == "ok" { k = $1; n[k]++; w[k, n[k]] = $5; c[k, n[k]] = $6 + $7 }
    function med(a, k,   i, j, x, v, m) {
      m = n[k]; for (i = 1; i <= m; i++) v[i] = a[k, i]
      for (i = 2; i <= m; i++) { x = v[i]; for (j = i - 1; j >= 1 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
      return (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
    }
    END {
      if (!n["haul"]) { print "no verified haul run: no ratio"; exit }
      hw = med(w, "haul"); hc = med(c, "haul"); nt = split(order, t, " ")
      for (i = 1; i <= nt; i++) {
        p = t[i]; if (p == "haul") continue
        what = (p == "s5cmd-cp") ? "the ingest limit (" p ", from local disk)" : p
        if (!n[p]) { printf "haul / %s: no verified run\n", what; continue }
        pw = med(w, p); pc = med(c, p)
        printf "haul / %s: wall %.2f (%.2f s / %.2f s), CPU %.2f (%.2f s / %.2f s)\n", what, hw / pw, hw, pw,
          (pc > 0 ? hc / pc : 0), hc, pc
      }
    }' "$TSV"
}

# ---------------------------------------------------------------- the runs
start_gw
mkdir -p "$RESULTS/logs"
FAILS=()
for w in "${WLS[@]}"; do
  make_workload "$w"
  TAG=s3-$NAME-c$C-$(date +%Y%m%dT%H%M%S)
  TSV=$RESULTS/$TAG.tsv
  printf 'tool\trun\tstatus\trc\twall_s\tuser_s\tsys_s\tmaxrss_kb\tsrv_cpu_s\tgw_cpu_s\tobjects\tmissing\textra\tuploads\tbad_bodies\n' > "$TSV"
  declare -A SKIP=()
  echo "== s3 $w: $N files of $SIZE bytes ($BYTES bytes) from $BASE_URL into versitygw $S3_EP, C=$C, runs=$R  $(date '+%F %T')  load: $(cut -d' ' -f1-3 /proc/loadavg)"
  for t in "${TOOLS[@]}"; do
    tool_s3 "$t" BUCKET
    printf '   %-10s %s\n' "$t" "$(echo "${CMD[*]}" | sed "s|$BENCH_DIR|\$BENCH_DIR|g; s|$SCRATCH/||g")"
  done
  rm -f "$SCRATCH/args"
  for ((r = 1; r <= R; r++)); do
    for ((k = 0; k < ${#TOOLS[@]}; k++)); do
      t=${TOOLS[$(((k + r - 1) % ${#TOOLS[@]}))]}
      [[ -n ${SKIP[$t]:-} ]] || run_s3 "$w" "$t" "$r"
    done
  done
  echo
  table "$N" "$BYTES" "gw%=pct:gw_cpu_s"
  ratios
  raw_line "srv% = nginx worker CPU / wall, gw% = versitygw CPU / wall, neither in cpu_s; rss_MiB: the largest process (the per-file peers run $C at once)"
  echo
done
if ((${#FAILS[@]})); then
  echo "failed runs (left out of the medians):"
  printf '   %s\n' "${FAILS[@]}"
  # a failed haul run is the script's failure; a peer's is reported above
  haul_failed=0
  for f in "${FAILS[@]}"; do
    if [[ $f == *" haul run "* ]]; then haul_failed=1; fi
  done
  exit "$haul_failed"
fi

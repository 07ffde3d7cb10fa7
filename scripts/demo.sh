#!/usr/bin/env bash
# demo.sh [OUTDIR]: haul on a real job, loopback only, on a machine with nothing but Go.
#   1. builds haul and scripts/demoserver into a temp dir
#   2. generates ${DEMO_FILES:-200} deterministic files (0 B .. 1 MiB) and serves them on 127.0.0.1
#   3. haul -i LIST -d OUTDIR --manifest OUTDIR/manifest.jsonl    (OUTDIR default ./demo-out)
#   4. checks every downloaded file is byte-identical to its source (cmp), and that nothing else
#      (no partial file) was left behind
#   5. runs the same command again: every entry must be skipped, nothing downloaded
# The server is killed and the temp dir removed on exit, whatever happens.
# OUTDIR is removed first if it holds a previous demo's output (marker file .haul-demo);
# a non-empty OUTDIR without that marker is refused.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-demo-out}
N=${DEMO_FILES:-200}
JOBS=${DEMO_JOBS:-16}
step() { printf '\n== %s\n' "$*"; }
die() { printf 'demo: FAIL: %s\n' "$*" >&2; exit 1; }
command -v go >/dev/null || PATH=/usr/local/go/bin:$PATH
command -v go >/dev/null || die "go not found (PATH, /usr/local/go/bin)"

if [[ -e $OUT && -n $(ls -A "$OUT" 2>/dev/null) ]]; then
  [[ -f $OUT/.haul-demo ]] || die "$OUT exists, is not empty and is not a previous demo's output"
  rm -rf "$OUT"
fi
mkdir -p "$OUT"
touch "$OUT/.haul-demo"
OUT=$(cd "$OUT" && pwd)

TMP=$(mktemp -d "${TMPDIR:-/tmp}/haul-demo.XXXXXX")
SERVER_PID=""
cleanup() {
  if [[ -n $SERVER_PID ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT

step "build haul and demoserver ($(go version | cut -d' ' -f3))"
(cd "$ROOT" && go build -o "$TMP/haul" ./cmd/haul && go build -o "$TMP/demoserver" ./scripts/demoserver)
echo "built $TMP/haul, $TMP/demoserver"

step "generate $N files and serve them on 127.0.0.1"
"$TMP/demoserver" -dir "$TMP/www" -gen "$N" > "$TMP/server.url" 2> "$TMP/server.log" < /dev/null &
SERVER_PID=$!
for _ in $(seq 300); do                     # the URL line is printed once it listens (<= 30 s)
  [[ -s $TMP/server.url ]] && break
  kill -0 "$SERVER_PID" 2>/dev/null || die "demoserver exited: $(cat "$TMP/server.log")"
  sleep 0.1
done
BASE=$(head -n 1 "$TMP/server.url")
[[ $BASE == http://127.0.0.1:* ]] || die "demoserver printed no URL: $(cat "$TMP/server.log")"
(cd "$TMP/www" && find . -type f | sed 's|^\./||' | LC_ALL=C sort) > "$TMP/files"
sed "s|^|$BASE/|" "$TMP/files" > "$TMP/urls.txt"
BYTES=$(cd "$TMP/www" && xargs -a "$TMP/files" -d '\n' stat -c %s | awk '{s += $1} END {printf "%d", s}')
echo "serving $(wc -l < "$TMP/files") files, $BYTES bytes at $BASE; list: $TMP/urls.txt, e.g."
head -n 3 "$TMP/urls.txt" | sed 's/^/  /'

# haul's tree layout: OUT/HOST_PORT/PATH (the port is not the scheme's default)
HOSTDIR=$OUT/$(echo "${BASE#http://}" | tr : _)
CMD=("$TMP/haul" -i "$TMP/urls.txt" -d "$OUT" -j "$JOBS" --manifest "$OUT/manifest.jsonl")

step "haul ${CMD[*]:1}"
t0=$(date +%s.%N)
"${CMD[@]}" || die "haul exited with status $?"
t1=$(date +%s.%N)
echo "done in $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}') s"

step "verify: every file byte-identical to its source, nothing else under $HOSTDIR"
[[ -d $HOSTDIR ]] || die "no $HOSTDIR: haul did not use the tree layout DIR/HOST_PORT/PATH"
bad=0
while IFS= read -r f; do
  cmp -s "$TMP/www/$f" "$HOSTDIR/$f" || { echo "differs or missing: $f"; bad=$((bad + 1)); }
done < "$TMP/files"
((bad == 0)) || die "$bad of $N files differ or are missing"
(cd "$HOSTDIR" && find . -type f | sed 's|^\./||' | LC_ALL=C sort) > "$TMP/got"
extra=$(LC_ALL=C comm -13 "$TMP/files" "$TMP/got")
[[ -z $extra ]] || die "unexpected files left in $HOSTDIR: $(head -n 5 <<< "$extra")"
ok=$(grep -c '"status":"ok"' "$OUT/manifest.jsonl" || true)
((ok == N)) || die "manifest has $ok ok entries, want $N"
echo "all $N files identical ($BYTES bytes); manifest: $ok ok entries in $OUT/manifest.jsonl"

step "run the same command again: everything must be skipped"
CMD[-1]=$OUT/manifest-rerun.jsonl
"${CMD[@]}" || die "second haul run exited with status $?"
skipped=$(grep -c '"status":"skipped"' "$OUT/manifest-rerun.jsonl" || true)
((skipped == N)) || die "second run skipped $skipped of $N entries"
echo "second run: $skipped of $N entries skipped (manifest $OUT/manifest-rerun.jsonl)"

step "demo OK: $N files, $BYTES bytes in $HOSTDIR"

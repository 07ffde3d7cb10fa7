#!/usr/bin/env bash
# s3-rss.sh: peak RSS of haul streaming big sources into a bucket (-d s3://), default --split.
#   haul -q -j J -i LIST -d s3://rss/run --manifest M     under /usr/bin/time -v
# The sources: FILES (4) URLs of SIZE (4G) bytes each from genserve (scripts/bench/genserve: a
# deterministic AES-CTR keystream with Range and If-Range, nothing on disk), so 16 GiB of sources
# take no disk. The store: versitygw (its POSIX backend in $BENCH_DIR/s3-rss/store, which holds
# the objects: about FILES x SIZE, twice that while an upload completes; deleted at the end).
# The run counts only if the manifest has FILES lines "ok" and each object has SIZE bytes (a
# HEAD); its peak RSS ("Maximum resident set size") is printed, with the wall time (the machine
# may be shared: the time is only indicative).
# Env: SIZE (4G), FILES (4), J (4), HAUL (a haul binary; default: built from this clone),
#      HAUL_OPTS (more haul flags), VERSITYGW (default: in PATH or $(go env GOPATH)/bin),
#      GEN_PORT (18090), S3_PORT (18091), KEEP=1 keeps the store's directory.
set -euo pipefail
# shellcheck source=scripts/bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SIZE=${SIZE:-4G}
FILES=${FILES:-4}
J=${J:-4}
GEN_PORT=${GEN_PORT:-18090}
S3_PORT=${S3_PORT:-18091}
ACCESS=haulbench SECRET=haulbench-secret-key REGION=us-east-1
WORK=$BENCH_DIR/s3-rss
GO=$(go_bin) || die "go not found"

[[ -x /usr/bin/time ]] || die "/usr/bin/time not found (Debian: apt-get install time)"
VGW=${VERSITYGW:-$(command -v versitygw || echo "$("$GO" env GOPATH)/bin/versitygw")}
[[ -x $VGW ]] || die "versitygw not found: go install github.com/versity/versitygw/cmd/versitygw@latest"
mkdir -p "$WORK/bin"
rm -rf "$WORK/store" && mkdir -p "$WORK/store"
if [[ -z ${HAUL:-} ]]; then
  log "building haul"
  (cd "$ROOT" && "$GO" build -o "$WORK/bin/haul" ./cmd/haul)
  HAUL=$WORK/bin/haul
fi
(cd "$ROOT" && "$GO" build -o "$WORK/bin/genserve" ./scripts/bench/genserve)

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ ${KEEP:-0} != 1 ]]; then rm -rf "$WORK/store"; fi
}
trap cleanup EXIT

"$WORK/bin/genserve" -listen "127.0.0.1:$GEN_PORT" & pids+=($!)
ROOT_ACCESS_KEY_ID='' ROOT_SECRET_ACCESS_KEY='' "$VGW" --quiet --access "$ACCESS" --secret "$SECRET" \
  --region "$REGION" --port "127.0.0.1:$S3_PORT" posix "$WORK/store" > "$WORK/versitygw.log" 2>&1 & pids+=($!)
S3=http://127.0.0.1:$S3_PORT
s3curl() { curl -sS --fail --aws-sigv4 "aws:amz:$REGION:s3" --user "$ACCESS:$SECRET" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$@"; }
for _ in $(seq 100); do
  s3curl -o /dev/null "$S3/" 2>/dev/null && curl -sf -o /dev/null "http://127.0.0.1:$GEN_PORT/1/ready" && break
  sleep 0.1
done
s3curl -X PUT -o /dev/null "$S3/rss" || die "cannot create the bucket (see $WORK/versitygw.log)"

LIST=$WORK/list.txt
: > "$LIST"
for i in $(seq "$FILES"); do echo "http://127.0.0.1:$GEN_PORT/$SIZE/f$i.bin" >> "$LIST"; done
MAN=$WORK/manifest.jsonl
log "haul -j $J: $FILES x $SIZE into $S3/rss/run ${HAUL_OPTS:-}"
# shellcheck disable=SC2086  # HAUL_OPTS is split on purpose
AWS_ENDPOINT_URL=$S3 AWS_ENDPOINT_URL_S3='' AWS_ACCESS_KEY_ID=$ACCESS AWS_SECRET_ACCESS_KEY=$SECRET \
  AWS_SESSION_TOKEN='' AWS_REGION=$REGION AWS_PROFILE='' \
  /usr/bin/time -v -o "$WORK/time.txt" "$HAUL" -q -j "$J" -i "$LIST" -d "s3://rss/run" --manifest "$MAN" ${HAUL_OPTS:-} ||
  die "haul failed (exit $?)"

ok=$(grep -c '"status":"ok"' "$MAN" || true)
((ok == FILES)) || die "$ok of $FILES entries ok (manifest $MAN)"
want=$(numfmt --from=iec "$SIZE")
for i in $(seq "$FILES"); do
  len=$(s3curl -I "$S3/rss/run/127.0.0.1_$GEN_PORT/$SIZE/f$i.bin" | tr -d '\r' | awk 'tolower($1)=="content-length:"{print $2}')
  [[ $len == "$want" ]] || die "object f$i.bin: ${len:-no} bytes, want $want"
done
listing=$(s3curl "$S3/rss?uploads=") || die "cannot list the uploads in progress"
uploads=$(grep -c '<Upload>' <<< "${listing//<Upload>/$'\n'<Upload>}" || true)
((uploads == 0)) || die "$uploads uploads left in progress"
rss=$(awk -F': ' '/Maximum resident set size/{print $2}' "$WORK/time.txt")
wall=$(awk -F': ' '/Elapsed \(wall clock\)/{print $2}' "$WORK/time.txt")
printf 'haul -j %s, %s x %s into versitygw: peak RSS %d MiB (%s KiB), wall %s\n' \
  "$J" "$FILES" "$SIZE" $((rss / 1024)) "$rss" "$wall"

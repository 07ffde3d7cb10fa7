# shellcheck shell=bash
# benchlib.sh OUTNAME: what scripts/resume-bench.sh and compress-bench.sh share. Sourced, not run.
# Loads ../shared/bench/common.sh (BENCH_DIR, WWW, BASE_URL, median, die, ...), checks nginx,
# builds haul into $TMP/haul ($HAUL), and makes $OUTROOT=$BENCH_DIR/OUTNAME a `chattr +T` parent
# (see ../shared/bench/README.md on this ext4) whose run dirs, made with fresh, go on exit.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_SHARED=${BENCH_SHARED:-$ROOT/../shared/bench}
# shellcheck source=/dev/null
source "$BENCH_SHARED/common.sh"
command -v go >/dev/null || PATH=/usr/local/go/bin:$PATH
nginx_running || die "nginx is not running: run $BENCH_SHARED/setup.sh"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/haul-build.XXXXXX")
OUTROOT=$BENCH_DIR/${1:?benchlib.sh needs an output dir name}
mkdir -p "$OUTROOT"
chattr +T "$OUTROOT" 2>/dev/null || true
trap 'rm -rf "$TMP" "$OUTROOT"/run.*' EXIT
(cd "$ROOT" && go build -o "$TMP/haul" ./cmd/haul)
# shellcheck disable=SC2034 # used by the scripts that source this file
HAUL=$TMP/haul
fresh() { mktemp -d "$OUTROOT/run.XXXXXX"; }

# shellcheck shell=bash
# benchlib.sh OUTNAME: what resume-bench.sh and compress-bench.sh share. Sourced, not run.
# Loads scripts/bench/lib.sh (BENCH_DIR, LISTS, WWW, BASE_URL, median, die, ...), checks nginx,
# builds haul into $TMP/haul ($HAUL), and makes $OUTROOT=$BENCH_DIR/OUTNAME a `chattr +T` parent
# (see scripts/bench/README.md) whose run dirs, made with fresh, go on exit.
# shellcheck source=scripts/bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench/lib.sh"
command -v go >/dev/null || PATH=/usr/local/go/bin:$PATH
nginx_running || die "nginx is not running: run scripts/bench/setup.sh"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/haul-build.XXXXXX")
OUTROOT=$BENCH_DIR/${1:?benchlib.sh needs an output dir name}
fresh_parent "$OUTROOT"
trap 'rm -rf "$TMP" "$OUTROOT"/run.*' EXIT
(cd "$ROOT" && go build -o "$TMP/haul" ./cmd/haul)
# shellcheck disable=SC2034 # used by the scripts that source this file
HAUL=$TMP/haul
fresh() { mktemp -d "$OUTROOT/run.XXXXXX"; }

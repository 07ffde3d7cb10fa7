#!/usr/bin/env bash
# test.sh: the project's test command (CI runs it through .ci/run). Fails fast, in this order:
#   gofmt -l, go vet, GOOS=darwin build, staticcheck (pinned), go test -race, then each fuzz target for $FUZZTIME
#   executions,
# and ends with go test's own lines: on success a repeat of go test -race's per-package results,
# on a failure the failing go test's output (fail fast, nothing printed after it).
# Env: FUZZTIME (100000x, 4-40 s a target here; 0 skips fuzzing), STATICCHECK_VERSION (pinned below).
# FUZZTIME is a count, not a duration: with a duration, Go 1.26's fuzz coordinator can fail a target
# with a bare "context deadline exceeded" when the time runs out while a worker is mid-call
# (go.dev/issue/75804, fixed in Go 1.27; it failed FuzzNetrc in CI). A count sets no deadline.
# A fuzz failure leaves its input under PKG/testdata/fuzz/FuzzName/: commit it as a regression test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# v0.8.2 = staticcheck 2026.2.2, the newest release when pinned; builds and runs with Go 1.26.
STATICCHECK_VERSION=${STATICCHECK_VERSION:-v0.8.2}
FUZZTIME=${FUZZTIME:-100000x}
LOG=$(mktemp "${TMPDIR:-/tmp}/haul-test.XXXXXX")
trap 'rm -f "$LOG"' EXIT
section() { printf '\n==== %s\n' "$*"; }
fail() { printf '\n==== FAIL: %s\n' "$*"; exit 1; }

section "$(go version)"

section "gofmt -l"
unformatted=$(gofmt -l .) || fail "gofmt (errors above)"
[[ -z $unformatted ]] || fail "gofmt would change these files (run gofmt -w):"$'\n'"$unformatted"
echo ok

section "go vet ./..."
go vet ./... || fail "go vet"
echo ok

section "GOOS=darwin go build ./... (the portable fallbacks compile)"
GOOS=darwin go build ./... || fail "GOOS=darwin go build"
GOOS=darwin go vet ./download/... ./sink/... ./internal/... || fail "GOOS=darwin go vet"
echo ok

section "staticcheck $STATICCHECK_VERSION ./..."
go run "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION" ./... || fail "staticcheck"
echo ok

section "go test -race -count=1 ./..."
# On failure exit at once, so go test's own FAIL lines stay the last ones printed. -timeout 45m,
# not go test's 10m: cmd/haul's package takes 3-5 minutes alone, and more than 10 on a 2-core
# machine loaded with other test runs; a test that hangs still fails (each wait names what it
# waited for before the deadline).
go test -race -count=1 -timeout 45m ./... 2>&1 | tee "$LOG" || exit 1

if [[ $FUZZTIME != 0 ]]; then
  # FILE:FuzzName for every fuzz target. -fuzz takes one target in one package per run.
  mapfile -t targets < <(grep -rEo --include='*_test.go' --exclude-dir=testdata --exclude-dir=vendor \
                           --exclude-dir=.git '^func Fuzz[A-Za-z0-9_]*' . |
                         sed -e 's|^\./||' -e 's|:func |:|' | LC_ALL=C sort)
  for t in "${targets[@]}"; do
    pkg=./$(dirname "${t%%:*}") name=${t#*:}
    section "fuzz $name in $pkg, -fuzztime $FUZZTIME"
    # -fuzzminimizetime: minimizing each new interesting input may take up to
    # 60 s by default; 2 s bounds it.
    go test -run '^$' -fuzz "^$name\$" -fuzztime "$FUZZTIME" -fuzzminimizetime 2s "$pkg" || exit 1
  done
  ((${#targets[@]})) || echo "(no fuzz targets found)"
fi

section "PASS; go test -race -count=1 ./... said:"
grep -E '^(ok|FAIL|\?)[[:space:]]' "$LOG"

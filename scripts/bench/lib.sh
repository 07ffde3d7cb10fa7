# shellcheck shell=bash
# shellcheck disable=SC2034  # the variables are read by the scripts that source this file
# lib.sh: sourced by every script in scripts/bench/ (and by scripts/benchlib.sh). It holds the
# places (directories, ports), the helpers every measurement uses, the one table of peer command
# lines, and the runner that runs tools round-robin into fresh directories, verifies each run and
# prints the table of medians. Not executable on its own.

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)   # scripts/bench
ROOT=$(cd "$BENCH/../.." && pwd)                       # the repository

# ---------------------------------------------------------------- places
BENCH_DIR=${BENCH_DIR:-${TMPDIR:-/tmp}/haul-bench}    # dataset, lists, servers' files, results
BENCH_HOST=127.0.0.1
BENCH_PORT=${BENCH_PORT:-18080}                       # nginx, HTTP/1.1
BENCH_TLS_PORT=${BENCH_TLS_PORT:-18443}               # the same nginx over HTTPS (ALPN h2, http/1.1)
BENCH_TLS_LOG_PORT=${BENCH_TLS_LOG_PORT:-18444}       # the same with a protocol access log (proto.sh)
BASE_URL=http://$BENCH_HOST:$BENCH_PORT
TLS_BASE_URL=https://$BENCH_HOST:$BENCH_TLS_PORT
WWW=$BENCH_DIR/www                                    # the dataset nginx serves
MANIFEST=$WWW/MANIFEST                                # "sha256 size path" per file of the dataset
TLS_DIR=$BENCH_DIR/tls
BENCH_CA=$TLS_DIR/ca.pem                              # the local CA every client is told to trust
LISTS=$BENCH_DIR/lists                                # NAME.{txt,paths,sha,bytes,aria2,curl,pairs}
RESULTS=$BENCH_DIR/results                            # one TSV per invocation, logs of failed runs
OUTROOT=$BENCH_DIR/out                                # run directories (chattr +T parent)
NGINX_CONF=$BENCH_DIR/nginx.conf
NGINX_PID=$BENCH_DIR/nginx.pid
BENCH_PY=${BENCH_PY:-/usr/bin/python3}                # Debian's, with python3-aiohttp and -requests
WORKLOADS=(small medium large huge)                   # each also as W-tls over HTTPS
CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------- helpers
log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", b - a}'; }

go_bin() {
  if command -v go >/dev/null 2>&1; then command -v go
  elif [[ -x /usr/local/go/bin/go ]]; then echo /usr/local/go/bin/go
  else return 1; fi
}

# median of the numbers on stdin, one a line ("-" when there are none)
median() {
  LC_ALL=C sort -g | awk '{v[NR] = $1} END {
    if (NR == 0) { print "-"; exit }
    printf "%.3f\n", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# the sorted sha256 of every regular file under DIR, one a line: a run is verified when this
# multiset equals the list's, whatever names and layout the tool chose
hash_tree() {
  find "$1" -type f -print0 | xargs -0 -r -n 256 sha256sum | awk '{print $1}' | LC_ALL=C sort
}

pid_alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
nginx_running() { pid_alive "$NGINX_PID"; }

# nginx_http_base TMPDIR: the http{} directives every benchmark nginx shares (setup.sh's, wan.sh's,
# hosts.sh's): files as sent (sendfile), keep-alive for as many requests as a run makes (it also
# bounds the requests of an HTTP/2 connection), and the temporary paths under TMPDIR.
nginx_http_base() {
  cat << EOF
  default_type application/octet-stream;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_requests 1000000;
  keepalive_timeout 60s;
  client_body_temp_path $1/body;
  proxy_temp_path $1/proxy;
  fastcgi_temp_path $1/fastcgi;
  uwsgi_temp_path $1/uwsgi;
  scgi_temp_path $1/scgi;
EOF
}

# CPU clock ticks (user + system, all threads) of one process; 0 when it is gone
proc_ticks() {
  local f
  [[ -r /proc/$1/stat ]] || { echo 0; return; }
  read -r -a f < "/proc/$1/stat" 2>/dev/null || { echo 0; return; }
  echo $((f[13] + f[14]))   # fields 14 and 15; comm has no spaces for the processes measured here
}
# ticks of the worker processes of the nginx masters whose pid files are given
workers_ticks() {
  local t=0 m p
  for m in "$@"; do
    pid_alive "$m" || continue
    for p in $(pgrep -P "$(cat "$m")"); do t=$((t + $(proc_ticks "$p"))); done
  done
  echo "$t"
}
ticks_s() { awk -v a="$1" -v b="$2" -v h="$CLK_TCK" 'BEGIN{printf "%.2f", (b - a) / h}'; }

# fresh_parent DIR: a directory whose subdirectories start in a fresh ext4 block group. On an ext4
# without a journal, creating files within minutes of deleting many is about 10x slower in the
# kernel (the allocator walks inodes deleted moments ago); the Orlov "top directory" flag makes
# each run directory under DIR start elsewhere, so a run does not pay for the previous one's rm.
fresh_parent() {
  mkdir -p "$1"
  chattr +T "$1" 2>/dev/null || log "chattr +T $1 failed: file creation may be slower after a delete"
}

# make_lists NAME: reads "URL DATASET_PATH [OUT_PATH]" lines on stdin and writes, in $LISTS,
#   NAME.txt    the URLs, one a line (haul, wget2, wget, the Python scripts)
#   NAME.paths  the dataset paths (rclone --files-from-raw)
#   NAME.sha    the sorted sha256 of the files the list must produce (the multiset a run is checked against)
#   NAME.bytes  their total size
#   NAME.aria2  URL + "  out=OUT_PATH" (aria2c -i), NAME.curl: url/output pairs (curl -K),
#   NAME.pairs  "OUT_PATH URL" (xargs -L 1 curl -o)
make_lists() {
  local n=$1
  mkdir -p "$LISTS"
  awk -v d="$LISTS/$n" '
    NR == FNR { sha[$3] = $1; size[$3] = $2; next }
    {
      out = (NF >= 3) ? $3 : $2
      if (!($2 in sha)) { print "not in the dataset: " $2 > "/dev/stderr"; bad = 1; exit 1 }
      print $1 > (d ".txt.tmp"); print $2 > (d ".paths.tmp"); print sha[$2] > (d ".sha.tmp")
      bytes += size[$2]
      print $1 > (d ".aria2.tmp"); print "  out=" out > (d ".aria2.tmp")
      print "url = \"" $1 "\"" > (d ".curl.tmp"); print "output = \"" out "\"" > (d ".curl.tmp")
      print out, $1 > (d ".pairs.tmp")
    }
    END { if (!bad) printf "%.0f\n", bytes > (d ".bytes.tmp") }' "$MANIFEST" - || die "list $n: bad input"
  LC_ALL=C sort -o "$LISTS/$n.sha.tmp" "$LISTS/$n.sha.tmp"
  local e
  for e in txt paths sha bytes aria2 curl pairs; do mv "$LISTS/$n.$e.tmp" "$LISTS/$n.$e"; done
}

# ---------------------------------------------------------------- the peers' command lines
# tool_cmd TOOL OUTDIR sets CMD to TOOL's command line for the list $L (a make_lists name) at
# concurrency $C. Context (set by the caller): TLS (1: https, every tool trusts $BENCH_CA and
# nothing disables verification; haul and rclone read it from SSL_CERT_FILE / --ca-cert),
# ARIA2_X (aria2c's connections per file), ARIA2_OPTS (more aria2c options), WGET2_NH (1: -nH,
# drop the host directory), PY_TREE (1: HOST/PATH), RCLONE_BASE + RCLONE_OPTS (rclone's http
# remote), HAUL_OPTS (more haul options). Every tool writes into OUTDIR and nowhere else.
tool_cmd() {
  local o=$2 l=$LISTS/$L ca=() cac=() pyca=() rca=() pc=$((C < 300 ? C : 300))   # curl's maximum
  if ((TLS)); then
    ca=(--ca-certificate="$BENCH_CA") cac=(--cacert "$BENCH_CA") pyca=(--cacert "$BENCH_CA") rca=(--ca-cert "$BENCH_CA")
  fi
  local aopts ropts hopts   # extra options, split on blanks
  read -r -a aopts <<< "${ARIA2_OPTS:-}"; read -r -a ropts <<< "${RCLONE_OPTS:-}"; read -r -a hopts <<< "${HAUL_OPTS:-}"
  local aria=(--no-conf -d "$o" -j "$C" --file-allocation=none --auto-save-interval=0 --allow-overwrite=true
              --auto-file-renaming=false --summary-interval=0 --console-log-level=warn --download-result=hide
              --show-console-readout=false "${ca[@]}" "${aopts[@]}")
  case $1 in
    aria2c)     CMD=(aria2c -i "$l.aria2" -x "${ARIA2_X:-1}" -s "${ARIA2_X:-1}" -k 1M "${aria[@]}") ;;
    aria2c-x1)  CMD=(aria2c -i "$l.aria2" -x 1 -s 1 "${aria[@]}") ;;
    aria2c-x16) CMD=(aria2c -i "$l.aria2" -x 16 -s 16 -k 1M "${aria[@]}") ;;
    curl)       CMD=(curl -q --no-progress-meter --fail --parallel --parallel-max "$pc" --create-dirs
                     --output-dir "$o" "${cac[@]}" -K "$l.curl") ;;
    # curl 7.88 --parallel queues a host's second transfer behind its first connection until that
    # one is done; --parallel-immediate opens connections at once
    curl-imm)   CMD=(curl -q --no-progress-meter --fail --parallel --parallel-immediate --parallel-max "$pc"
                     --create-dirs --output-dir "$o" "${cac[@]}" -K "$l.curl") ;;
    wget2)      CMD=(wget2 --no-config -q --max-threads="$C" -x -P "$o" "${ca[@]}" -i "$l.txt")
                if ((${WGET2_NH:-1})); then CMD+=(-nH); fi ;;
    wget)       CMD=(wget --no-config -q -x -nH -P "$o" "${ca[@]}" -i "$l.txt") ;;
    xargs-curl) CMD=(xargs -a "$l.pairs" -P "$C" -L 1 curl -q -sS --fail --create-dirs --output-dir "$o" "${cac[@]}" -o) ;;
    py-aiohttp) CMD=("$BENCH_PY" "$BENCH/pyfetch.py" aiohttp -i "$l.txt" -d "$o" -j "$C" "${pyca[@]}")
                if ((${PY_TREE:-0})); then CMD+=(--tree); fi ;;
    py-threads) CMD=("$BENCH_PY" "$BENCH/pyfetch.py" threads -i "$l.txt" -d "$o" -j "$C" "${pyca[@]}") ;;
    rclone)     CMD=(rclone copy --config /dev/null :http: "$o" --http-url "$RCLONE_BASE" --files-from-raw "$l.paths"
                     --no-traverse --transfers "$C" --checkers "$C" -q "${rca[@]}" "${ropts[@]}") ;;
    haul|haul-*) # haul-NAME: the binary $HAUL_NAME (ab runs, variants); Go reads SSL_CERT_FILE
                local bin=${HAUL:-} v=${1#haul}
                if [[ -n $v ]]; then v=HAUL_${v#-}; v=${v^^}; bin=${!v:-}; fi
                CMD=("$bin" -q -i "$l.txt" -d "$o" -j "$C" --layout tree "${hopts[@]}")
                if ((TLS)); then CMD=(env SSL_CERT_FILE="$BENCH_CA" "${CMD[@]}"); fi ;;
    *) die "unknown tool $1" ;;
  esac
}

# tool_available TOOL: installed (haul: $HAUL executable)
tool_available() {
  case $1 in
    haul) [[ -n ${HAUL:-} && -x ${HAUL:-} ]] ;;
    haul-*) local v=${1#haul-}; v=HAUL_${v^^}; [[ -n ${!v:-} && -x ${!v:-} ]] ;;
    aria2c*) command -v aria2c >/dev/null ;;
    curl*) command -v curl >/dev/null ;;
    xargs-curl) command -v curl >/dev/null ;;
    py-aiohttp) "$BENCH_PY" -c 'import aiohttp' 2>/dev/null ;;
    py-threads) "$BENCH_PY" -c 'import requests' 2>/dev/null ;;
    *) command -v "$1" >/dev/null ;;
  esac
}

# pick_tools DEFAULT...: TOOLS = $BENCH_TOOLS (or DEFAULT) minus those not installed (said so)
pick_tools() {
  local want t
  read -r -a want <<< "${BENCH_TOOLS:-$*}"
  TOOLS=()
  for t in "${want[@]}"; do
    if tool_available "$t"; then TOOLS+=("$t")
    elif [[ $t == haul* ]]; then echo "   $t: no binary (set HAUL to a haul binary), skipped"
    else echo "   $t: not installed, skipped"; fi
  done
  ((${#TOOLS[@]})) || die "no tool to run"
}

show_cmds() {
  local t
  for t in "${TOOLS[@]}"; do
    tool_cmd "$t" OUT
    printf '   %-10s %s\n' "$t" "$(echo "${CMD[*]}" | sed "s|$BENCH_DIR|\$BENCH_DIR|g; s|$BENCH/||g")"
  done
}

# ---------------------------------------------------------------- the runner
# run_all: every tool of TOOLS, R rounds, the first tool rotating each round, each run into a new
# directory under $OUTROOT (a fresh_parent), under /usr/bin/time (wall, user, sys, peak RSS of the
# largest process) and `timeout $TO`; a run counts (status ok) only if the sha256 multiset of the
# files it wrote equals $LISTS/$L.sha; a tool that times out is not run again. Raw rows go to
# $RESULTS/$TAG.tsv: tool run status rc wall_s user_s sys_s maxrss_kb srv_cpu_s [PROBE_COLS]
# files missing extra. The caller defines srv_ticks (the server's CPU ticks) and may define
# probe_begin/probe_end, which run around each run and set PROBE to tab-separated values for
# PROBE_COLS (a tab-separated header).
PROBE_COLS=""
declare -A TIMEOUTS=()   # TOOL -> its own timeout, where it is not $TO
probe_begin() { :; }
probe_end() { PROBE=""; }
run_all() {
  local r k t
  TSV=$RESULTS/$TAG.tsv
  mkdir -p "$RESULTS/logs"
  fresh_parent "$OUTROOT"
  printf 'tool\trun\tstatus\trc\twall_s\tuser_s\tsys_s\tmaxrss_kb\tsrv_cpu_s%s\tfiles\tmissing\textra\n' \
    "${PROBE_COLS:+$'\t'$PROBE_COLS}" > "$TSV"
  declare -gA SKIP=()
  for ((r = 1; r <= R; r++)); do
    for ((k = 0; k < ${#TOOLS[@]}; k++)); do
      t=${TOOLS[$(((k + r - 1) % ${#TOOLS[@]}))]}
      [[ -n ${SKIP[$t]:-} ]] || run_one "$t" "$r"
    done
  done
  sync
}

CUR=()   # the running run's files, removed by cleanup_run on an interrupt
# KEEP_RUNS=1: the verified runs' directories stay until cleanup_run, at the script's end. On
# this machine's ext4 (no journal) a new inode skips every inode of its block group freed in the
# last 60 s (360 s while its inode table block is dirty: recently_deleted() in fs/ext4/ialloc.c),
# so a run that starts right after the previous one's rm pays for it: mkdir took 300 us, not 38,
# and a 100,000-host run 64 s, not 40. The callers whose runs create many inodes set it.
KEEP_RUNS=${KEEP_RUNS:-0}
KEPT=()
TOOL_PID=""
run_one() {
  local t=$1 r=$2 out=$OUTROOT/$TAG.$1.$2 tf=$OUTROOT/$TAG.$1.time got=$OUTROOT/$TAG.$1.got
  local lf=$RESULTS/logs/$TAG.$1.$2.log rc=0 s0 s1 wall usr sys rss files miss extra status
  CUR=("$out" "$tf" "$got")
  rm -rf "$out"; mkdir -p "$out"; sync
  tool_cmd "$t" "$out"
  probe_begin
  s0=$(srv_ticks)
  # in the background and waited for, so that a signal reaches the script's trap at once
  /usr/bin/time -f '%e %U %S %M' -o "$tf" timeout -k 5 "${TIMEOUTS[$t]:-$TO}" "${CMD[@]}" < /dev/null > "$lf" 2>&1 &
  TOOL_PID=$!
  wait "$TOOL_PID" || rc=$?
  TOOL_PID=""
  s1=$(srv_ticks)
  probe_end
  read -r wall usr sys rss < <(tail -n 1 "$tf")
  hash_tree "$out" > "$got"
  files=$(wc -l < "$got")
  miss=$(LC_ALL=C comm -23 "$LISTS/$L.sha" "$got" | wc -l)
  extra=$(LC_ALL=C comm -13 "$LISTS/$L.sha" "$got" | wc -l)
  if ((rc == 124 || rc == 137)); then status=TIMEOUT; SKIP[$t]=1
  elif ((miss || extra)); then status=FAILED
  else status=ok; fi
  if [[ $status == ok && ! -s $lf ]]; then rm -f "$lf"
  elif (($(stat -c %s "$lf") > 16777216)); then   # keep the ends of a huge log
    { head -c 4194304 "$lf"; printf '\n[... cut ...]\n'; tail -c 4194304 "$lf"; } > "$lf.cut"; mv "$lf.cut" "$lf"
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s%s\t%s\t%s\t%s\n' "$t" "$r" "$status" "$rc" "$wall" "$usr" "$sys" "$rss" \
    "$(ticks_s "$s0" "$s1")" "${PROBE:+$'\t'$PROBE}" "$files" "$miss" "$extra" >> "$TSV"
  log "$TAG run $r/$R $t: ${wall}s $status (rc=$rc files=$files missing=$miss extra=$extra$(paste -d= <(tr '\t' '\n' <<< "$PROBE_COLS") <(tr '\t' '\n' <<< "$PROBE") | sed 's/^/ /' | tr -d '\n'))"
  rm -f "$got" "$tf"
  if ((KEEP_RUNS)); then KEPT+=("$out"); else rm -rf "$out"; fi
  CUR=()
}

# cleanup_run: for an EXIT trap: stop a tool still running, remove the interrupted run's files
# and the runs kept (KEEP_RUNS)
cleanup_run() {
  local p
  if [[ -n $TOOL_PID ]]; then
    for p in $(pgrep -P "$TOOL_PID"); do kill -TERM "$p" 2>/dev/null || true; done   # time -> timeout
    wait "$TOOL_PID" 2>/dev/null || true
  fi
  if ((${#CUR[@]})); then rm -rf "${CUR[@]}"; fi
  if ((${#KEPT[@]})); then rm -rf "${KEPT[@]}"; KEPT=(); sync; fi   # clean buffers: 60 s, not 360
}

# table N BYTES [COLUMN...]: the medians of $TSV per tool, in TOOLS' order. Every table has ok
# (verified/all runs), wall_s (median), files/s and MB/s (10^6 B) at that median, cpu_s (median
# user+sys of the tool and its children), rss_MiB (peak RSS of its largest process, worst run),
# srv% (server CPU / wall), x_best (wall / the fastest tool's) and every run's wall ('!' failed).
# COLUMN adds one: HEAD=pct:COL (median of 100 x COL / wall), HEAD=med:COL (median), HEAD=max:COL
# (the largest), HEAD=per:COL:X (median of COL / X), HEAD=lim:X (median wall / X). Medians are over
# the verified runs; with none, the added columns use every run.
table() {
  local n=$1 bytes=$2; shift 2
  awk -F'\t' -v N="$n" -v BYTES="$bytes" -v SPEC="$*" -v ORDER="${TOOLS[*]}" '
    function med(key, k,   i, j, x, a) {
      for (i = 1; i <= k; i++) a[i] = V[key, i]
      for (i = 2; i <= k; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
      if (k == 0) return "-"
      return (k % 2) ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
    }
    function add(key, v) { if (v ~ /^-?[0-9.]+$/) V[key, ++K[key]] = v }
    NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; nc = split(SPEC, spec, " "); next }
    {
      t = $1; runs[t]++; walls[t] = walls[t] $col["wall_s"] ($3 == "ok" ? "" : "!") " "
      ok = ($3 == "ok"); if (ok) nok[t]++
      for (s = 0; s <= 1; s++) {   # s = 0: every run, s = 1: verified runs only
        if (s && !ok) continue
        w = $col["wall_s"]
        add(t SUBSEP s SUBSEP "wall", w); add(t SUBSEP s SUBSEP "cpu", $col["user_s"] + $col["sys_s"])
        if ($col["maxrss_kb"] > rss[t, s]) rss[t, s] = $col["maxrss_kb"]
        if (w > 0) add(t SUBSEP s SUBSEP "srv", 100 * $col["srv_cpu_s"] / w)
        for (c = 1; c <= nc; c++) {
          split(spec[c], hk, "="); split(hk[2], a, ":"); v = $col[a[2]]
          if (a[1] == "pct" && w > 0) add(t SUBSEP s SUBSEP c, 100 * v / w)
          else if (a[1] == "med") add(t SUBSEP s SUBSEP c, v)
          else if (a[1] == "per" && v ~ /^[0-9.]+$/) add(t SUBSEP s SUBSEP c, v / a[3])
          else if (a[1] == "max" && (!((t, s, c) in mx) || v + 0 > mx[t, s, c])) mx[t, s, c] = v
        }
      }
    }
    function f(x, fmt) { return (x == "-" || x == "") ? "-" : sprintf(fmt, x) }
    END {
      nt = split(ORDER, tools, " ")
      for (i = 1; i <= nt; i++) { t = tools[i]; m = med(t SUBSEP 1 SUBSEP "wall", K[t SUBSEP 1 SUBSEP "wall"])
        if (m != "-" && (best == "" || m < best)) best = m }
      printf "%-12s %5s %8s %9s %8s %7s %8s %5s", "tool", "ok", "wall_s", "files/s", "MB/s", "cpu_s", "rss_MiB", "srv%"
      for (c = 1; c <= nc; c++) { split(spec[c], hk, "="); printf " %8s", hk[1] }
      printf " %7s  %s\n", "x_best", "walls (s, all runs)"
      for (i = 1; i <= nt; i++) {
        t = tools[i]; if (!(t in runs)) continue
        s = (nok[t] > 0) ? 1 : 0
        m = med(t SUBSEP 1 SUBSEP "wall", K[t SUBSEP 1 SUBSEP "wall"])
        printf "%-12s %5s %8s %9s %8s %7s %8s %5s", t, (nok[t] + 0) "/" runs[t], f(m, "%.2f"),
          (m == "-" ? "-" : sprintf("%.0f", N / m)), (m == "-" ? "-" : sprintf("%.1f", BYTES / 1e6 / m)),
          f(med(t SUBSEP s SUBSEP "cpu", K[t SUBSEP s SUBSEP "cpu"]), "%.2f"), sprintf("%.0f", rss[t, s] / 1024),
          f(med(t SUBSEP s SUBSEP "srv", K[t SUBSEP s SUBSEP "srv"]), "%.0f")
        for (c = 1; c <= nc; c++) {
          split(spec[c], hk, "="); split(hk[2], a, ":")
          if (a[1] == "lim") v = (m == "-" ? "-" : sprintf("%.2f", m / a[2]))
          else if (a[1] == "max") v = ((t, s, c) in mx) ? mx[t, s, c] : "-"
          else { v = med(t SUBSEP s SUBSEP c, K[t SUBSEP s SUBSEP c]); v = f(v, a[1] == "per" ? "%.2f" : "%.0f") }
          printf " %8s", v
        }
        printf " %7s  %s\n", (m == "-" ? "-" : sprintf("%.2f", m / best)), walls[t]
      }
    }' "$TSV"
}

# the closing line bench.sh looks for: it names the raw TSV
raw_line() { echo "(raw runs: \$BENCH_DIR/results/$TAG.tsv; '!' marks a failed run; $*)"; }

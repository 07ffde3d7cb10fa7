#!/usr/bin/env bash
# wan.sh PROFILE [C=16] | wan.sh up | wan.sh down: haul and its peers under the conditions of a
# wide-area network, on this machine: toxiproxy (a TCP proxy whose `latency` toxic delays each
# direction) in front of setup.sh's nginx, and a second nginx ("wan nginx") that caps each request.
#   far-small       WAN_SMALL_FILES (2,000) small files over HTTP/1.1, WAN_RTT_MS (40) ms added
#                   round trip (half each way)
#   far-small-tls   the same over HTTPS (HTTP/2 where the tool offers it)
#   many-hosts      the same files round-robin over WAN_HOSTS (50) hosts 127.0.0.2.., each its own
#                   toxiproxy listener with the same latency
#   many-hosts-tls  the same over HTTPS (the wan nginx has a certificate for all those addresses)
#   capped-large    the 4 large files (WAN_LARGE_FILES) from the wan nginx, limit_rate WAN_RATE (16m)
#                   per request, no added latency (a CDN's cap per connection)
#   capped-huge     one of them (256 MiB) from the same server
# Tools: aria2c (one connection per file), curl --parallel, wget2, rclone (single-host profiles),
# haul; on capped-* also aria2c-x16 (16 ranged connections per file) and curl-imm
# (--parallel-immediate). Runs as loopback.sh's (fresh directories, verified, medians), and the
# table adds prx% (toxiproxy CPU / wall), conns (TCP connections toxiproxy accepted) and x_limit:
#   far-*, many-*: limit = ceil(files / C) x RTT (C requests in flight, one per round trip; the
#                  RTT measured with curl on a reused connection; connection setup not counted)
#   capped-*:      limit = bytes / min(C x WAN_RATE, L), L = loopback + page-cache MB/s measured
#                  at the start (4 uncapped curls to files, best of 2; WAN_LOOPBACK_MBS skips it)
# toxiproxy and the wan nginx are started when needed and stopped at exit, unless they were
# already up (`wan.sh up` starts both and leaves them; `wan.sh down` stops them by pid file).
# toxiproxy accepts TCP locally, so a TCP handshake costs no round trip here (a TLS one does).
# Env: HAUL, BENCH_RUNS (3), BENCH_TOOLS, BENCH_TIMEOUT (600 s), HAUL_OPTS, WAN_RTT_MS (40),
#      WAN_SMALL_FILES (2000), WAN_LARGE_FILES (4), WAN_HOSTS (50, at most 250), WAN_RATE (16m),
#      WAN_LOOPBACK_MBS, TOXIPROXY_VERSION (v2.5.0).
set -euo pipefail
# shellcheck source=scripts/bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RTT_MS=${WAN_RTT_MS:-40}
HOSTS=${WAN_HOSTS:-50}
RATE=${WAN_RATE:-16m}
TOXI_VERSION=${TOXIPROXY_VERSION:-v2.5.0}
TOXI_BIN=$BENCH_DIR/bin/toxiproxy-server
TOXI_API=http://127.0.0.1:${WAN_TOXI_PORT:-18474}
TOXI_PID=$BENCH_DIR/toxiproxy.pid
TOXI_LOG=$BENCH_DIR/toxiproxy.log
HTTP_PORT=18180        # toxiproxy -> nginx :BENCH_PORT (far-small; 127.0.0.H for many-hosts)
TLS_PORT=18543         # toxiproxy -> nginx :BENCH_TLS_PORT (far-small-tls), wan nginx :MTLS_PORT (many-hosts-tls)
CAP_PORT=18081         # wan nginx, limit_rate per request
MTLS_PORT=18445        # wan nginx, HTTPS with the many-hosts certificate
WAN_CONF=$BENCH_DIR/wan-nginx.conf
WAN_PID=$BENCH_DIR/wan-nginx.pid
[[ $HOSTS =~ ^[0-9]+$ && $HOSTS -ge 1 && $HOSTS -le 250 ]] || die "WAN_HOSTS must be 1..250"
[[ $RTT_MS =~ ^[0-9]+$ ]] || die "WAN_RTT_MS must be whole milliseconds"

rate_bytes() {
  case $1 in
    *[kK]) echo $((${1%?} * 1024)) ;;
    *[mM]) echo $((${1%?} * 1048576)) ;;
    *[0-9]) echo "$1" ;;
    *) die "bad WAN_RATE $1 (nginx syntax: 512k, 16m)" ;;
  esac
}

# ---------------------------------------------------------------- toxiproxy
toxi_up() {
  if [[ ! -x $TOXI_BIN ]]; then
    local go; go=$(go_bin) || die "go not found (toxiproxy is installed with go install)"
    log "installing toxiproxy $TOXI_VERSION into $BENCH_DIR/bin"
    mkdir -p "$BENCH_DIR/bin"
    GOBIN=$BENCH_DIR/bin GOFLAGS=-mod=mod "$go" install "github.com/Shopify/toxiproxy/v2/cmd/server@$TOXI_VERSION" \
      "github.com/Shopify/toxiproxy/v2/cmd/cli@$TOXI_VERSION" || die "go install toxiproxy failed"
    mv "$BENCH_DIR/bin/server" "$TOXI_BIN"; mv "$BENCH_DIR/bin/cli" "$BENCH_DIR/bin/toxiproxy-cli"
  fi
  if ! pid_alive "$TOXI_PID"; then
    ! curl -q -s -o /dev/null --max-time 1 "$TOXI_API/version" || die "something else answers on $TOXI_API"
    # info level: one "Accepted client" line per TCP connection, which the conns column counts
    LOG_LEVEL=info nohup "$TOXI_BIN" -host 127.0.0.1 -port "${TOXI_API##*:}" -seed 1 >> "$TOXI_LOG" 2>&1 < /dev/null &
    echo $! > "$TOXI_PID"
    local i
    for ((i = 0; i < 100; i++)); do
      curl -q -s -o /dev/null --max-time 1 "$TOXI_API/version" && break
      pid_alive "$TOXI_PID" || die "toxiproxy exited: see $TOXI_LOG"
      sleep 0.1
    done
    log "toxiproxy started (pid $(cat "$TOXI_PID")), API $TOXI_API"
  fi
  # every proxy again, with a latency toxic each way (POST /reset drops toxics left by anyone)
  local h half=$((RTT_MS / 2)) rest=$((RTT_MS - RTT_MS / 2)) proxies cfg=$BENCH_DIR/toxiproxy-toxics.curl codes
  proxies=$( {
    echo "far-http 127.0.0.1:$HTTP_PORT 127.0.0.1:$BENCH_PORT"
    echo "far-tls 127.0.0.1:$TLS_PORT 127.0.0.1:$BENCH_TLS_PORT"
    for ((h = 2; h <= HOSTS + 1; h++)); do
      echo "mh$h 127.0.0.$h:$HTTP_PORT 127.0.0.1:$BENCH_PORT"
      echo "mht$h 127.0.0.$h:$TLS_PORT 127.0.0.1:$MTLS_PORT"
    done } )
  curl -q -sS --fail -o /dev/null -X POST "$TOXI_API/reset" || die "toxiproxy /reset failed"
  awk 'BEGIN {printf "["} {printf "%s{\"name\":\"%s\",\"listen\":\"%s\",\"upstream\":\"%s\",\"enabled\":true}",
       (NR > 1 ? "," : ""), $1, $2, $3} END {print "]"}' <<< "$proxies" |
    curl -q -sS --fail -o /dev/null -X POST -H 'Content-Type: application/json' --data-binary @- "$TOXI_API/populate" ||
    die "toxiproxy could not listen (ports in use? see $TOXI_LOG)"
  # all the toxics through one curl (one keep-alive connection): url/data/output per request
  awk -v api="$TOXI_API" -v up="$half" -v down="$rest" '{
    for (d = 0; d < 2; d++) {
      if (NR > 1 || d) print "next"
      print "url = \"" api "/proxies/" $1 "/toxics\""
      print "header = \"Content-Type: application/json\""
      printf "data = {\"name\":\"lat_%s\",\"type\":\"latency\",\"stream\":\"%s\",\"toxicity\":1,\"attributes\":{\"latency\":%d,\"jitter\":0}}\n",
        d ? "down" : "up", d ? "downstream" : "upstream", d ? down : up
      print "output = \"/dev/null\""
      print "write-out = \"%{http_code}\\n\""
    } }' <<< "$proxies" > "$cfg"
  codes=$(curl -q -sS -K "$cfg") || die "toxiproxy: adding the toxics failed"
  [[ $(grep -c '^200$' <<< "$codes") == $((2 * $(wc -l <<< "$proxies"))) ]] || die "toxiproxy refused some toxics"
  log "toxiproxy: $(wc -l <<< "$proxies") proxies, $half ms upstream + $rest ms downstream"
}

# ---------------------------------------------------------------- the wan nginx
wan_up() {
  local cert=$TLS_DIR/wan.pem key=$TLS_DIR/wan.key san="DNS:localhost" h user=""
  if ! openssl verify -CAfile "$BENCH_CA" "$cert" > /dev/null 2>&1 || ! openssl x509 -checkend 86400 -noout -in "$cert" > /dev/null ||
     ! openssl x509 -noout -ext subjectAltName -in "$cert" | grep -q "IP Address:127.0.0.$((HOSTS + 1))\(,\|$\)"; then
    for ((h = 1; h <= HOSTS + 1; h++)); do san+=",IP:127.0.0.$h"; done
    log "certificate $cert for 127.0.0.1..127.0.0.$((HOSTS + 1))"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$key" -out "$TLS_DIR/wan.csr" \
      -subj /CN=127.0.0.1 2> /dev/null
    printf '%s\n' "subjectAltName=$san" "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
      "extendedKeyUsage=serverAuth" > "$TLS_DIR/wan.ext"
    openssl x509 -req -in "$TLS_DIR/wan.csr" -CA "$BENCH_CA" -CAkey "$TLS_DIR/ca.key" -CAserial "$TLS_DIR/ca.srl" \
      -CAcreateserial -days 825 -extfile "$TLS_DIR/wan.ext" -out "$cert" 2> /dev/null
    rm -f "$TLS_DIR/wan.csr" "$TLS_DIR/wan.ext"
    rm -f "$WAN_CONF"   # a running wan nginx reloads the new certificate below
  fi
  [[ $(id -u) == 0 ]] && user="user $(id -un) $(id -gn);"
  mkdir -p "$BENCH_DIR/wan-nginx-tmp"
  cat > "$WAN_CONF.new" << EOF
# written by scripts/bench/wan.sh
$user
worker_processes 1;
worker_rlimit_nofile 65536;
pid $WAN_PID;
error_log $BENCH_DIR/wan-nginx-error.log warn;
events { worker_connections 8192; }
http {
$(nginx_http_base "$BENCH_DIR/wan-nginx-tmp")
  access_log off;
  open_file_cache max=20000 inactive=120s;
  server {   # capped-*: each request (a ranged one too) gets its own $RATE/s
    listen 127.0.0.1:$CAP_PORT backlog=4096;
    root $WWW;
    limit_rate $RATE;
  }
  server {   # many-hosts-tls, behind toxiproxy's listeners on 127.0.0.2..
    listen 127.0.0.1:$MTLS_PORT ssl http2 backlog=4096;
    root $WWW;
    ssl_certificate $cert;
    ssl_certificate_key $key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:WANTLS:10m;
  }
}
EOF
  nginx -t -q -e "$BENCH_DIR/wan-nginx-error.log" -c "$WAN_CONF.new" -p "$BENCH_DIR/" || die "nginx rejects $WAN_CONF.new"
  if pid_alive "$WAN_PID"; then
    if cmp -s "$WAN_CONF.new" "$WAN_CONF"; then rm "$WAN_CONF.new"
    else mv "$WAN_CONF.new" "$WAN_CONF"; kill -HUP "$(cat "$WAN_PID")"; sleep 1; log "wan nginx reloaded"; fi
  else
    mv "$WAN_CONF.new" "$WAN_CONF"
    nginx -e "$BENCH_DIR/wan-nginx-error.log" -c "$WAN_CONF" -p "$BENCH_DIR/"
    log "wan nginx started (pid $(cat "$WAN_PID")): 127.0.0.1:$CAP_PORT (limit_rate $RATE), 127.0.0.1:$MTLS_PORT (TLS)"
  fi
}

stop_pid() { # stop_pid PIDFILE NAME SIGNAL
  pid_alive "$1" || { rm -f "$1"; return 0; }
  local pid i; pid=$(cat "$1")
  kill "-$3" "$pid"
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2> /dev/null && kill -KILL "$pid"
  rm -f "$1"; log "$2 (pid $pid) stopped"
}

case ${1:-} in
  up) nginx_running || die "nginx is not running: run scripts/bench/setup.sh"
      wan_up; toxi_up
      echo "far-small http://127.0.0.1:$HTTP_PORT/  far-small-tls https://127.0.0.1:$TLS_PORT/  capped http://127.0.0.1:$CAP_PORT/"
      echo "many-hosts http://127.0.0.{2..$((HOSTS + 1))}:$HTTP_PORT/  many-hosts-tls https://127.0.0.{2..$((HOSTS + 1))}:$TLS_PORT/"
      exit 0 ;;
  down) stop_pid "$TOXI_PID" toxiproxy TERM; stop_pid "$WAN_PID" "wan nginx" QUIT; exit 0 ;;
esac

P=${1:?usage: wan.sh far-small|far-small-tls|many-hosts|many-hosts-tls|capped-large|capped-huge [C] | up | down}
C=${2:-16}
R=${BENCH_RUNS:-3}
TO=${BENCH_TIMEOUT:-600}
NSMALL=${WAN_SMALL_FILES:-2000}
NLARGE=${WAN_LARGE_FILES:-4}
[[ $C =~ ^[1-9][0-9]*$ ]] || die "bad concurrency $C"
[[ $R =~ ^[1-9][0-9]*$ ]] || die "bad BENCH_RUNS $R"
[[ $NSMALL =~ ^[0-9]+$ && $NSMALL -ge 1 && $NSMALL -le 10000 ]] || die "WAN_SMALL_FILES must be 1..10000"
[[ $NLARGE =~ ^[1-4]$ ]] || die "WAN_LARGE_FILES must be 1..4"
case $P in
  far-small) KIND=lat TLS=0 MULTI=0 ;;      far-small-tls) KIND=lat TLS=1 MULTI=0 ;;
  many-hosts) KIND=lat TLS=0 MULTI=1 ;;     many-hosts-tls) KIND=lat TLS=1 MULTI=1 ;;
  capped-large|capped-huge) KIND=cap TLS=0 MULTI=0 ;;
  *) die "unknown profile $P" ;;
esac
nginx_running || die "nginx is not running: run scripts/bench/setup.sh"

STARTED=()
cleanup() {
  cleanup_run
  if [[ " ${STARTED[*]} " == *" toxi "* ]]; then stop_pid "$TOXI_PID" toxiproxy TERM; fi
  if [[ " ${STARTED[*]} " == *" wan "* ]]; then stop_pid "$WAN_PID" "wan nginx" QUIT; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
if [[ $KIND == cap || $P == many-hosts-tls ]]; then pid_alive "$WAN_PID" || STARTED+=(wan); wan_up; fi
if [[ $KIND == lat ]]; then pid_alive "$TOXI_PID" || STARTED+=(toxi); toxi_up; fi

# ---------------------------------------------------------------- the list
L=wan-$P
small() { awk -v n="$NSMALL" 'index($3, "small/") == 1 && n-- > 0 {print $3}' "$MANIFEST"; }
case $P in
  far-small) small | awk -v b="http://127.0.0.1:$HTTP_PORT/" '{print b $1, $1}' ;;
  far-small-tls) small | awk -v b="https://127.0.0.1:$TLS_PORT/" '{print b $1, $1}' ;;
  many-hosts) small | awk -v s=http -v p="$HTTP_PORT" -v h="$HOSTS" \
      '{printf "%s://127.0.0.%d:%s/%s %s\n", s, 2 + (NR - 1) % h, p, $1, $1}' ;;
  many-hosts-tls) small | awk -v s=https -v p="$TLS_PORT" -v h="$HOSTS" \
      '{printf "%s://127.0.0.%d:%s/%s %s\n", s, 2 + (NR - 1) % h, p, $1, $1}' ;;
  capped-large|capped-huge)
    awk -v n="$( [[ $P == capped-huge ]] && echo 1 || echo "$NLARGE")" -v b="http://127.0.0.1:$CAP_PORT/" \
      'index($3, "large/") == 1 && n-- > 0 {print b $3, $3}' "$MANIFEST" ;;
esac | make_lists "$L"
N=$(wc -l < "$LISTS/$L.txt")
BYTES=$(cat "$LISTS/$L.bytes")
FIRST=$(head -n 1 "$LISTS/$L.txt")
RCLONE_BASE=${FIRST%/"$(head -n 1 "$LISTS/$L.paths")"}
# rclone's http backend sends a HEAD per file (a round trip each) unless told not to; on capped-*
# the HEAD gives the size its multi-thread download needs
RCLONE_OPTS=""; [[ $KIND == lat ]] && RCLONE_OPTS=--http-no-head
ARIA2_X=1 WGET2_NH=1 PY_TREE=0

if [[ $KIND == cap ]]; then tools=(aria2c aria2c-x16 curl curl-imm wget2 rclone haul)
else tools=(aria2c curl wget2 rclone haul); fi
pick_tools "${tools[@]}"
if ((MULTI)) && [[ " ${TOOLS[*]} " == *" rclone "* ]]; then   # rclone's http remote is one host
  read -r -a TOOLS <<< "$(printf '%s\n' "${TOOLS[@]}" | grep -vx rclone | paste -sd' ')"
  echo "   rclone: not run on $P (an http remote is one host)"
  ((${#TOOLS[@]})) || die "no tool to run"
fi

# ---------------------------------------------------------------- the limit
if [[ $KIND == lat ]]; then
  cac=(); ((TLS)) && cac=(--cacert "$BENCH_CA")
  a=(); for ((i = 0; i < 7; i++)); do a+=(-o /dev/null "$FIRST"); done
  # 7 requests on one connection: the round trip is starttransfer - pretransfer of the 6 reusing it
  m=$(curl -q -sS --fail "${cac[@]}" -w '%{time_appconnect} %{time_pretransfer} %{time_starttransfer} %{http_version}\n' "${a[@]}") ||
    die "cannot fetch $FIRST"
  RTT=$(awk 'NR > 1 {printf "%.3f\n", 1000 * ($3 - $2)}' <<< "$m" | median)
  LIMIT=$(awk -v n="$N" -v c="$C" -v r="$RTT" 'BEGIN{printf "%.3f", int((n + c - 1) / c) * r / 1000}')
  LIMIT_TXT="limit = ceil(files/C) x RTT = ceil($N/$C) x $(printf %.1f "$RTT") ms = $LIMIT s (C requests in flight, one per RTT; connection setup not counted)"
  NOTE="RTT (curl, reused connection, median of 6): $(printf %.1f "$RTT") ms; $(awk -v tls="$TLS" 'NR == 1 {printf "a new connection'"'"'s first response: %.1f ms%s, HTTP/%s",
        1000 * $3, tls ? sprintf(" (TLS done at %.1f ms)", 1000 * $1) : "", $4}' <<< "$m")"
else
  RB=$(rate_bytes "$RATE")
  if [[ -n ${WAN_LOOPBACK_MBS:-} ]]; then LMBS=$WAN_LOOPBACK_MBS LSRC=WAN_LOOPBACK_MBS
  else
    fresh_parent "$OUTROOT"; LMBS=0
    for k in 1 2; do
      d=$OUTROOT/loopback.$$.$k; mkdir -p "$d"; sync; t0=$(now)
      for ((i = 0; i < 4; i++)); do curl -q -sS --fail -o "$d/$i" "$BASE_URL/large/l$i.bin" & done
      wait; v=$(awk -v w="$(elapsed "$t0" "$(now)")" 'BEGIN{printf "%.0f", 4 * 268435456 / 1e6 / w}')
      rm -rf "$d"; ((v > LMBS)) && LMBS=$v
    done
    LSRC="4 parallel uncapped curls of large/ to files, best of 2"
  fi
  FC=$((N < C ? N : C))
  LIMIT=$(awk -v b="$BYTES" -v c="$C" -v r="$RB" -v l="$LMBS" 'BEGIN{x = c * r; if (l * 1e6 < x) x = l * 1e6; printf "%.3f", b / x}')
  LIMIT1=$(awk -v b="$BYTES" -v c="$FC" -v r="$RB" -v l="$LMBS" 'BEGIN{x = c * r; if (l * 1e6 < x) x = l * 1e6; printf "%.3f", b / x}')
  LIMIT_TXT="limit = bytes / min(C x $RATE/s, L) = $BYTES / min($C x $RB, ${LMBS}e6) B/s = $LIMIT s (C connections, ranged requests allowed; L = loopback/page-cache $LMBS MB/s: $LSRC)"
  LIMIT_TXT+=$'\n'"   one connection per file: bytes / min(min(files, C) x $RATE/s, L) = $LIMIT1 s; aria2c-x16 may open min(files, C) x 16 connections, so x_limit < 1 is possible for it"
  NOTE="wan nginx $RCLONE_BASE, limit_rate $RATE per request, no added latency"
fi

srv_ticks() { workers_ticks "$NGINX_PID" "$WAN_PID"; }
PROBE_COLS=$'prx_cpu_s\tconns'
probe_begin() {
  X0=0; pid_alive "$TOXI_PID" && X0=$(proc_ticks "$(cat "$TOXI_PID")")
  LOG0=$(stat -c %s "$TOXI_LOG" 2> /dev/null || echo 0)
}
probe_end() {
  local x1=0 conns=-
  pid_alive "$TOXI_PID" && x1=$(proc_ticks "$(cat "$TOXI_PID")")
  if [[ $KIND == lat ]]; then
    sleep 0.2   # toxiproxy's log may lag the last connection
    conns=$(tail -c +"$((LOG0 + 1))" "$TOXI_LOG" | grep -c '"Accepted client"' || true)
  fi
  PROBE=$(ticks_s "$X0" "$x1")$'\t'$conns
}

TAG=$L-c$C-$(date +%Y%m%dT%H%M%S)
echo "== wan: profile=$P files=$N bytes=$BYTES concurrency=$C runs=$R  $(date '+%F %T')  load: $(cut -d' ' -f1-3 /proc/loadavg)"
case $P in
  far-*) echo "   via toxiproxy $RCLONE_BASE -> nginx, latency $((RTT_MS / 2)) + $((RTT_MS - RTT_MS / 2)) ms" ;;
  many-*) echo "   $HOSTS hosts 127.0.0.2..127.0.0.$((HOSTS + 1)) (round-robin), each a toxiproxy listener, latency $((RTT_MS / 2)) + $((RTT_MS - RTT_MS / 2)) ms" ;;
esac
echo "   $NOTE"
echo "   $LIMIT_TXT"
((TLS)) && echo "   over HTTP/2 wget2 keeps --http2-request-window (30) streams a connection in flight, more than C (x_limit < 1 possible)"
show_cmds
run_all
echo
table "$N" "$BYTES" "prx%=pct:prx_cpu_s" "conns=med:conns" "x_limit=lim:$LIMIT"
echo "   $LIMIT_TXT"
raw_line "srv% = CPU of both nginx / wall; prx% = toxiproxy CPU / wall; conns = TCP connections toxiproxy accepted; x_limit = wall / limit"

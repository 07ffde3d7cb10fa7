#!/usr/bin/env bash
# hosts.sh [--check] PROFILE [C=64] (root): haul and its peers on lists spread over very many host
# names (10^4..10^6), all on this machine, in a private network namespace.
#   hosts        HOSTS_N (100,000) hosts, one small file each, HTTP/1.1
#   hosts-tls    HOSTS_N (20,000) hosts, one small file each, HTTPS (HTTP/2 where offered)
#   hosts-reuse  HOSTS_N/10 hosts x 10 files (HOSTS_N files), HTTP/1.1; line i goes to host
#                i mod (HOSTS_N/10), so consecutive lines name different hosts
#   --check      HOSTS_N=2000, BENCH_RUNS=1, BENCH_TIMEOUT=60: a smoke run (PROFILE default hosts)
# Host x is h-127-A-B-C.hosts.test, the address 127.16.0.0 + x (127.16.0.0/12: 1,048,576 names).
# Line i fetches /fNNNN-K.bin, served as small/dNN/fNNNN.bin of the dataset (NNNN = i mod 10000,
# K = the line's round on its host); every tool writes OUT/HOST/fNNNN-K.bin.
# The script runs itself again under `unshare --net --mount --pid --fork`: there lo is the only
# interface (127.0.0.0/8, ::1 and HOSTS_ADDRS); dnsmasq on 127.0.0.53 synthesises the names
# (--synth-domain; --local: AAAA is NODATA, other names NXDOMAIN, nothing forwarded, no cache);
# /etc/resolv.conf and /etc/nsswitch.conf ("hosts: files dns") are replaced by bind mounts seen
# only there; one nginx (1 worker, as setup.sh's) listens on :80 and :443 (HTTP/2, a certificate
# for *.hosts.test from the bench CA). Nothing listens outside the namespace, and the PID
# namespace ends every process the script leaves.
# Runs as loopback.sh's (fresh directories, verified, medians); the table adds dns% (dnsmasq CPU /
# wall), missing (files absent or wrong, worst run), reqs and conns (requests and TCP connections
# nginx served and accepted, from stub_status, the script's own polls taken off), open_max (most
# connections open at once, polled 4 times a second: idle keep-alive to hosts a tool is done
# with), fd_max (most descriptors the tool held at once, polled 10 times a second from
# /proc/PID/fd; worst run) with fd_sock, fd_dir and fd_file (its sockets, directories and files
# under the run's directory at that poll), dns_q (queries dnsmasq answered, from its SIGUSR1
# statistics) and q/host.
# Env: HOSTS_N, BENCH_RUNS (1), BENCH_TOOLS (aria2c curl wget2 py-aiohttp haul), BENCH_TIMEOUT
#      (3600 s), HAUL, HAUL_OPTS, HOSTS_DNS_LOG (1: dnsmasq --log-queries, adds the A and AAAA
#      counts; doubles dnsmasq's CPU a query), HOSTS_ADDRS ("198.51.100.1/32": an IPv4 address on
#      lo, so that getaddrinfo's AI_ADDRCONFIG sees an IPv4 host; "198.51.100.1/32 2001:db8::1/128"
#      makes it dual-stack; set but empty: none, and aria2c then resolves nothing).
# Every run's files are kept until the script ends (if the inodes allow): on an ext4 without a
# journal, files made within minutes after many were deleted cost several times the CPU (lib.sh,
# KEEP_RUNS), so let a few minutes pass between two invocations.
# Caveats: one nginx serves every host, so its descriptor limit (the hard `ulimit -n`) bounds the
# idle keep-alive connections of all hosts together (past it nginx closes the oldest and says so
# under the table); a TCP handshake on lo costs no round trip (wan.sh adds latency).
set -euo pipefail
# shellcheck source=scripts/bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SELF=$BENCH/hosts.sh

ARGS=("$@")
CHECK=0
if [[ ${1:-} == --check ]]; then CHECK=1; shift; fi
P=${1:-}
((CHECK)) && P=${P:-hosts}
[[ -n $P ]] || die "usage: hosts.sh [--check] hosts|hosts-tls|hosts-reuse [C]"
C=${2:-64}
case $P in
  hosts) TLS=0 REUSE=0 DEFAULT_N=100000 ;;
  hosts-tls) TLS=1 REUSE=0 DEFAULT_N=20000 ;;
  hosts-reuse) TLS=0 REUSE=1 DEFAULT_N=100000 ;;
  *) die "unknown profile $P (hosts, hosts-tls, hosts-reuse)" ;;
esac
if ((CHECK)); then N=${HOSTS_N:-2000} R=${BENCH_RUNS:-1} TO=${BENCH_TIMEOUT:-60}
else N=${HOSTS_N:-$DEFAULT_N} R=${BENCH_RUNS:-1} TO=${BENCH_TIMEOUT:-3600}; fi
[[ $C =~ ^[1-9][0-9]*$ ]] || die "bad concurrency $C"
[[ $R =~ ^[1-9][0-9]*$ ]] || die "bad BENCH_RUNS $R"
[[ $N =~ ^[0-9]+$ && $N -ge 10 ]] || die "HOSTS_N must be a whole number >= 10"
if ((REUSE)); then H=$((N / 10)) N=$((N / 10 * 10)); else H=$N; fi
((H <= 1048576)) || die "at most 1,048,576 hosts (127.16.0.0/12)"
HD=$BENCH_DIR/hosts          # this script's servers' files
DNS=127.0.0.53
STUB=8080                    # nginx stub_status, inside the namespace
DNS_LOG_QUERIES=${HOSTS_DNS_LOG:-0}
ADDRS=${HOSTS_ADDRS-198.51.100.1/32}

# ---------------------------------------------------------------- into the namespaces
if [[ -z ${HOSTS_IN_NS:-} ]]; then
  [[ $(id -u) == 0 ]] || die "needs root (unshare --net --mount, mount --bind, ip addr)"
  for b in unshare ip mount ss nginx openssl curl /usr/sbin/dnsmasq /usr/bin/time; do
    command -v "$b" > /dev/null || die "$b not found (dnsmasq: Debian's dnsmasq-base; setup.sh installs it)"
  done
  [[ -s $MANIFEST && -s $BENCH_CA && -s $TLS_DIR/ca.key ]] || die "no dataset or CA in $BENCH_DIR: run scripts/bench/setup.sh"
  # --pid --mount-proc: the script is PID 1 there, and the kernel ends what it leaves when it exits;
  # --kill-child: it gets SIGTERM (and its trap stops the servers) if unshare is killed
  exec unshare --net --mount --pid --mount-proc --fork --kill-child=SIGTERM -- \
    env HOSTS_IN_NS=1 bash "$SELF" "${ARGS[@]}"
fi

# ---------------------------------------------------------------- certificate for *.hosts.test
CERT=$TLS_DIR/hosts.pem KEY=$TLS_DIR/hosts.key
if ! openssl verify -CAfile "$BENCH_CA" "$CERT" > /dev/null 2>&1 || ! openssl x509 -checkend 86400 -noout -in "$CERT" > /dev/null; then
  log "certificate $CERT for *.hosts.test"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$KEY" -out "$TLS_DIR/hosts.csr" \
    -subj "/CN=*.hosts.test" 2> /dev/null
  printf '%s\n' "subjectAltName=DNS:*.hosts.test" "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" > "$TLS_DIR/hosts.ext"
  openssl x509 -req -in "$TLS_DIR/hosts.csr" -CA "$BENCH_CA" -CAkey "$TLS_DIR/ca.key" -CAserial "$TLS_DIR/ca.srl" \
    -CAcreateserial -days 825 -extfile "$TLS_DIR/hosts.ext" -out "$CERT" 2> /dev/null
  rm -f "$TLS_DIR/hosts.csr" "$TLS_DIR/hosts.ext"
fi

# ---------------------------------------------------------------- the list (kept for the next run)
L=$P-n$N
STAMP="$(sha256sum "$MANIFEST" | cut -c1-16) $L"
if [[ $(cat "$LISTS/$L.ok" 2> /dev/null) != "$STAMP" ]]; then
  log "writing the list $LISTS/$L.* ($N URLs over $H hosts)"
  scheme=http; ((TLS)) && scheme=https
  awk -v n="$N" -v h="$H" -v s="$scheme" 'BEGIN {
    for (i = 0; i < n; i++) {
      x = i % h; f = i % 10000
      host = sprintf("h-127-%d-%d-%d.hosts.test", 16 + int(x / 65536), int(x / 256) % 256, x % 256)
      name = sprintf("f%04d-%d.bin", f, int(i / h))
      printf "%s://%s/%s small/d%02d/f%04d.bin %s/%s\n", s, host, name, int(f / 100), f, host, name
    } }' | make_lists "$L"
  echo "$STAMP" > "$LISTS/$L.ok"
fi
BYTES=$(cat "$LISTS/$L.bytes")
ARIA2_X=1 WGET2_NH=0 PY_TREE=1
ARIA2_OPTS=--deferred-input=true   # aria2c reads the list as it goes, as it advises for long lists
pick_tools aria2c curl wget2 py-aiohttp haul

# ---------------------------------------------------------------- the namespace's network
ip link set lo up
for a in $ADDRS; do ip addr add "$a" dev lo; done
mkdir -p "$HD/nginx-tmp" "$RESULTS/logs"
printf 'nameserver %s\n' "$DNS" > "$HD/resolv.conf"
mount --bind "$HD/resolv.conf" /etc/resolv.conf
if [[ -f /etc/nsswitch.conf ]]; then   # files and DNS only: nothing that asks the host's resolver
  awk '/^hosts:/ {print "hosts: files dns"; next} {print}' /etc/nsswitch.conf > "$HD/nsswitch.conf"
  mount --bind "$HD/nsswitch.conf" /etc/nsswitch.conf
fi
for d in /run/nscd /var/run/nscd; do if [[ -d $d ]]; then mount -t tmpfs none "$d"; fi; done
ulimit -n "$(ulimit -Hn)" 2> /dev/null || true
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY no_proxy NO_PROXY
NOFILE=$(ulimit -n)

# ---------------------------------------------------------------- servers (stopped at exit)
DNS_PID="" NG_PID="" SAMPLER_PID="" FD_PID=""
DNS_LOG=$HD/dnsmasq.log
NG_ERR=$HD/nginx-error.log
cleanup() {
  cleanup_run
  if [[ -n $SAMPLER_PID ]]; then kill "$SAMPLER_PID" 2> /dev/null || true; fi
  if [[ -n $FD_PID ]]; then kill "$FD_PID" 2> /dev/null || true; fi
  if [[ -n $NG_PID ]]; then kill -QUIT "$NG_PID" 2> /dev/null || true; fi
  if [[ -n $DNS_PID ]]; then kill -TERM "$DNS_PID" 2> /dev/null || true; fi
  wait 2> /dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

: > "$DNS_LOG"
dq=(); ((DNS_LOG_QUERIES)) && dq=(--log-queries)
# --keep-in-foreground (not --no-daemon, which also logs every line to stderr): $! is dnsmasq
/usr/sbin/dnsmasq --keep-in-foreground --conf-file=/dev/null --pid-file= --port=53 --listen-address="$DNS" \
  --bind-interfaces --no-resolv --no-hosts --local=/hosts.test/ --synth-domain=hosts.test,127.16.0.0,127.31.255.255,h- \
  --cache-size=0 --dns-forward-max=1000 --log-facility="$DNS_LOG" "${dq[@]}" 2> "$HD/dnsmasq.stderr" &
DNS_PID=$!

user=""
[[ $(id -u) == 0 ]] && user="user $(id -un) $(id -gn);"
# worker_connections: the descriptor limit; no open_file_cache, whose descriptors would come out of it
cat > "$HD/nginx.conf" << EOF
# written by scripts/bench/hosts.sh; runs only inside its network namespace
daemon off;
$user
worker_processes 1;
worker_rlimit_nofile $NOFILE;
pid $HD/nginx.pid;
error_log $NG_ERR warn;
events { worker_connections $((NOFILE - 64)); }
http {
$(nginx_http_base "$HD/nginx-tmp")
  access_log off;
  server {
    listen 80 backlog=4096;
    listen 443 ssl http2 backlog=4096;
    ssl_certificate $CERT;
    ssl_certificate_key $KEY;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:HOSTSTLS:10m;
    location ~ "^/f(\d\d)(\d\d)-\d+\.bin\$" { alias $WWW/small/d\$1/f\$1\$2.bin; }
    location / { return 404; }
  }
  server {
    listen 127.0.0.1:$STUB;
    location = /stub { stub_status; }
  }
}
EOF
nginx -t -q -e "$NG_ERR" -c "$HD/nginx.conf" -p "$HD/" || die "nginx rejects $HD/nginx.conf (see $NG_ERR)"
nginx -e "$NG_ERR" -c "$HD/nginx.conf" -p "$HD/" 2>> "$NG_ERR" &
NG_PID=$!

stub() { # "accepts requests" so far (this request counted)
  curl -q -sS --max-time 5 "http://127.0.0.1:$STUB/stub" | awk 'NR == 3 {print $1, $3}'
}
for ((i = 0; i < 100; i++)); do stub > /dev/null 2>&1 && break; kill -0 "$NG_PID" 2> /dev/null || break; sleep 0.1; done
stub > /dev/null || die "nginx did not start (see $NG_ERR)"
kill -0 "$DNS_PID" 2> /dev/null || die "dnsmasq did not start: $(cat "$HD/dnsmasq.stderr" "$DNS_LOG")"

# queries dnsmasq has answered (forwarded + answered locally), from the statistics SIGUSR1 logs
dns_count() {
  local off line i
  off=$(stat -c %s "$DNS_LOG")
  kill -USR1 "$DNS_PID"
  for ((i = 0; i < 250; i++)); do
    line=$(tail -c +"$((off + 1))" "$DNS_LOG" | grep -m1 'queries forwarded' || true)
    [[ -n $line ]] && break
    sleep 0.02
  done
  [[ -n $line ]] || die "no statistics from dnsmasq after SIGUSR1"
  awk '{for (i = 1; i < NF; i++) { if ($i == "forwarded") f = $(i + 1); if ($i == "locally") l = $(i + 1) }
        gsub(/,/, "", f); gsub(/,/, "", l); print f + l}' <<< "$line"
}
# "Active connections" every 0.25 s into FILE, one a line, until STOPFILE exists (bash's /dev/tcp:
# no process, no DNS)
sampler() {
  local line a
  set +e
  while [[ ! -e $2 ]]; do
    a=-
    if exec 9<> "/dev/tcp/127.0.0.1/$STUB"; then
      printf 'GET /stub HTTP/1.0\r\nHost: stub\r\n\r\n' >&9
      while IFS= read -r -t 5 line <&9; do
        if [[ $line == "Active connections:"* ]]; then a=${line#Active connections: }; a=${a%%[[:space:]]*}; fi
      done
      exec 9>&-
    fi
    echo "$a" >> "$1"
    sleep 0.25
  done
}

# the names resolve through dnsmasq, and the first and last URLs give the right bytes
first=$(head -n 1 "$LISTS/$L.txt") last=$(tail -n 1 "$LISTS/$L.txt")
getent ahosts "$(cut -d/ -f3 <<< "$first")" | grep -q '^127\.16\.' || die "names do not resolve through dnsmasq"
for u in "$first" "$last"; do
  got=$(curl -q -fsS --cacert "$BENCH_CA" "$u" | sha256sum | cut -d' ' -f1) || die "cannot fetch $u"
  grep -qx "$got" "$LISTS/$L.sha" || die "$u: not the dataset's bytes"
done

# the tool's open descriptors every 0.1 s into FILE until STOPFILE exists, one line a poll: total
# sockets directories files other. The tool is the child of `timeout` (run_one's); a directory or
# file is one under the run's directory OUT (a file: a name ending .bin or .part, or a staging file
# with no name); other: pipes, the epoll instance, the list, /dev/null.
fd_sampler() {
  local pid="" t
  set +e
  while [[ ! -e $2 ]]; do
    if [[ -z $pid || ! -d /proc/$pid/fd ]]; then
      pid=""
      for t in $(pgrep -x timeout); do pid=$(pgrep -P "$t" | head -n 1); [[ -n $pid ]] && break; done
    fi
    if [[ -n $pid ]]; then
      find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 -printf '%l\n' 2> /dev/null |
        awk -v out="$3" '{ n++ }
          /^socket:/ { s++; next }
          index($0, out) == 1 { if ($0 ~ /(\.bin|\.part|\(deleted\))$/) f++; else d++; next }
          { o++ }
          END { if (n) print n, s + 0, d + 0, f + 0, o + 0 }' >> "$1"
    fi
    sleep 0.1
  done
}

srv_ticks() { local t=0 p; for p in $(pgrep -P "$NG_PID"); do t=$((t + $(proc_ticks "$p"))); done; echo "$t"; }
PROBE_COLS=$'dns_cpu_s\treqs\tconns\topen_max\tfd_max\tfd_sock\tfd_dir\tfd_file\tdns_q\tdns_a\tdns_aaaa'
probe_begin() {
  SF=$OUTROOT/$TAG.samples FF=$OUTROOT/$TAG.fds STOP=$OUTROOT/$TAG.stop
  rm -f "$SF" "$FF" "$STOP"
  CUR+=("$SF" "$FF" "$STOP")
  : > "$FF"
  fd_sampler "$FF" "$STOP" "$out" &   # $out: run_one's run directory
  FD_PID=$!
  Q0=$(dns_count) LOG0=$(stat -c %s "$DNS_LOG") D0=$(proc_ticks "$DNS_PID")
  read -r A0 R0 < <(stub) || die "nginx stub_status failed"
  sampler "$SF" "$STOP" &
  SAMPLER_PID=$!
}
probe_end() {
  local a1 r1 polls conns reqs omax q1 qa=- qaaaa=- d1 log1 fmax fsock fdir ffile
  d1=$(proc_ticks "$DNS_PID")
  touch "$STOP"; wait "$SAMPLER_PID" "$FD_PID" 2> /dev/null || true; SAMPLER_PID="" FD_PID=""
  read -r a1 r1 < <(stub) || die "nginx stub_status failed"
  q1=$(dns_count) log1=$(stat -c %s "$DNS_LOG")
  polls=$(wc -l < "$SF")
  conns=$((a1 - A0 - 1 - polls)) reqs=$((r1 - R0 - 1 - polls))
  omax=$(awk '$1 ~ /^[0-9]+$/ && $1 - 1 > m {m = $1 - 1} END {print m + 0}' "$SF")   # less the poll itself
  if ((DNS_LOG_QUERIES)); then
    qa=$(tail -c +"$((LOG0 + 1))" "$DNS_LOG" | head -c "$((log1 - LOG0))" | grep -c 'query\[A\] ' || true)
    qaaaa=$(tail -c +"$((LOG0 + 1))" "$DNS_LOG" | head -c "$((log1 - LOG0))" | grep -c 'query\[AAAA\] ' || true)
  fi
  # the poll with the most descriptors open, and its sockets, directories and files
  read -r fmax fsock fdir ffile < <(awk '$1 > m {m = $1; l = $1 " " $2 " " $3 " " $4} END {print (l == "" ? "- - - -" : l)}' "$FF")
  rm -f "$SF" "$FF" "$STOP"
  PROBE=$(printf '%s\t' "$(ticks_s "$D0" "$d1")" "$reqs" "$conns" "$omax" "$fmax" "$fsock" "$fdir" "$ffile" "$((q1 - Q0))" "$qa")$qaaaa
}

TAG=$L-c$C-$(date +%Y%m%dT%H%M%S)
echo "== hosts: profile=$P hosts=$H files=$N ($((N / H)) a host$( ((REUSE)) && echo ", interleaved")) bytes=$BYTES" \
     "concurrency=$C runs=$R  $(date '+%F %T')  load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "   private netns: lo $(ip -br addr show lo | awk '{$1 = $2 = ""; print}' | xargs); listening: $(ss -Hltn | awk '{print $4}' | sort -u | paste -sd' ')"
echo "   names h-127-16-0-0.hosts.test .. $(sed -n "${H}p" "$LISTS/$L.txt" | cut -d/ -f3) via dnsmasq $DNS (synthesised, no cache);" \
     "nginx 1 worker, worker_connections $((NOFILE - 64)) (descriptor limit $NOFILE)"
show_cmds
# Each run's files stay until the end (KEEP_RUNS, lib.sh) when the file system has the inodes for
# all of them twice over: a run then never starts right after a delete of its size.
need=$(((N + H + 1) * ${#TOOLS[@]} * R)) free=$(df --output=iavail "$BENCH_DIR" | tail -n 1)
if ((need * 2 <= free)); then KEEP_RUNS=1
else echo "   note: $need inodes for all runs, $free free: each run is removed after it (slower runs after a delete)"; fi
run_all
if grep -q 'worker_connections are not enough' "$NG_ERR" 2> /dev/null; then
  echo "   note: nginx ran out of worker_connections and closed idle keep-alive connections early ($NG_ERR)"
fi
echo
cols=("dns%=pct:dns_cpu_s" "missing=max:missing" "reqs=med:reqs" "conns=med:conns" "open_max=med:open_max"
      "fd_max=max:fd_max" "fd_sock=med:fd_sock" "fd_dir=med:fd_dir" "fd_file=med:fd_file"
      "dns_q=med:dns_q" "q/host=per:dns_q:$H")
((DNS_LOG_QUERIES)) && cols+=("A=med:dns_a" "AAAA=med:dns_aaaa")
table "$N" "$BYTES" "${cols[@]}"
raw_line "srv% = nginx worker CPU / wall; dns% = dnsmasq CPU / wall; missing = files absent or wrong (worst run);" \
  "reqs/conns = requests/TCP connections nginx served/accepted; open_max = most connections open at once (polled 4/s);" \
  "fd_max = most descriptors the tool had open (polled 10/s; worst run), fd_sock/dir/file = its sockets, directories and files then;" \
  "dns_q = DNS queries answered, q/host = dns_q / $H hosts"

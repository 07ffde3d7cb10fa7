#!/usr/bin/env bash
# setup.sh [--no-install] [--regen] [--access-log]: everything the loopback workloads need, idempotent.
#   1. the peers from Debian's packages (root; --no-install skips): nginx-light aria2 wget2 wget curl
#      hyperfine wrk nghttp2-client (h2load) python3-aiohttp python3-requests rclone dnsmasq-base ...;
#      with Go, s5cmd (pinned, go install) into $BENCH_DIR/bin, and versitygw when it is nowhere
#      (s3.sh install; a failure there only leaves s3.sh without s5cmd)
#   2. the dataset in $BENCH_DIR/www, the same bytes on every machine (AES-CTR keystreams of fixed
#      keys): small 10,000 x 4 KiB in small/d00..d99, medium 200 x 1 MiB, large 4 x 256 MiB,
#      huge 1 x 2 GiB (3.3 GiB); its MANIFEST ("sha256 size path") and SHA256SUMS
#   3. a local CA and a server certificate for 127.0.0.1/localhost in $BENCH_DIR/tls
#   4. the URL lists $BENCH_DIR/lists/W.* for W in small medium large huge and W-tls
#   5. nginx (1 worker, sendfile, keep-alive 60 s, 10^6 requests a connection) serving the dataset
#      on 127.0.0.1:$BENCH_PORT (18080) and over HTTPS (TLS 1.2/1.3, ALPN h2 and http/1.1) on
#      :$BENCH_TLS_PORT (18443); :$BENCH_TLS_LOG_PORT (18444) is the same with a protocol log
#   6. the page cache warmed with the dataset, and one URL of each list fetched
# --regen makes the dataset and the certificates again; stop.sh stops nginx.
set -euo pipefail
# shellcheck source=scripts/bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

INSTALL=1 REGEN=0 ACCESS_LOG=0
for a in "$@"; do
  case $a in
    --no-install) INSTALL=0 ;;
    --regen) REGEN=1 ;;
    --access-log) ACCESS_LOG=1 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) die "unknown argument $a (setup.sh [--no-install] [--regen] [--access-log])" ;;
  esac
done

# ---------------------------------------------------------------- 1. packages
PKGS=(nginx-light aria2 wget2 wget curl hyperfine wrk nghttp2-client python3-aiohttp python3-requests
      rclone dnsmasq-base openssl time e2fsprogs iproute2 util-linux procps)
if ((INSTALL)); then
  missing=()
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if ((${#missing[@]})); then
    [[ $(id -u) == 0 ]] || die "missing packages (${missing[*]}); run as root or install them"
    log "installing ${missing[*]}"
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
      "${missing[@]}" > /dev/null
  fi
fi
# s3.sh's peer and store, built with Go (no Debian package): s5cmd and versitygw
if ((INSTALL)); then
  if go_bin > /dev/null; then
    "$BENCH/s3.sh" install || log "s5cmd or versitygw not installed: s3.sh runs without what is missing"
  else
    log "go not found: s5cmd and versitygw (s3.sh) not installed"
  fi
fi
for b in nginx openssl curl sha256sum; do command -v "$b" > /dev/null || die "$b not found"; done
for m in http_ssl_module http_v2_module; do
  nginx -V 2>&1 | grep -q -- "--with-$m" || die "this nginx lacks $m (Debian's nginx-light has it)"
done

# ---------------------------------------------------------------- 2. dataset
DATA_VERSION=haul-bench-dataset-2
# keystream NAME BYTES: BYTES deterministic, incompressible bytes named NAME
keystream() {
  head -c "$2" /dev/zero |
    openssl enc -aes-128-ctr -nosalt -K "$(printf 'haul-bench %s' "$1" | sha256sum | cut -c1-32)" -iv 00000000000000000000000000000000
}
mkdir -p "$BENCH_DIR"
if ((REGEN)) || [[ $(cat "$WWW/.version" 2>/dev/null) != "$DATA_VERSION" ]]; then
  log "writing the dataset into $WWW (3.3 GiB)"
  tmp=$BENCH_DIR/www.new
  rm -rf "$tmp" "$WWW"
  mkdir -p "$tmp/small" "$tmp/medium" "$tmp/large" "$tmp/huge"
  for d in $(seq 0 99); do
    dir=$(printf '%s/small/d%02d' "$tmp" "$d")
    mkdir "$dir"
    # 100 files of 4 KiB from one stream: fNNNN.bin where NNNN = 100 x d + k
    keystream "small-$d" $((100 * 4096)) | split -b 4096 -a 2 -d --additional-suffix=.bin - "$dir/f$(printf %02d "$d")"
  done
  keystream medium $((200 * 1048576)) | split -b 1048576 -a 3 -d --additional-suffix=.bin - "$tmp/medium/m"
  for i in 0 1 2 3; do keystream "large-$i" $((256 * 1048576)) > "$tmp/large/l$i.bin"; done
  keystream huge-0 $((2048 * 1048576)) > "$tmp/huge/h0.bin"
  (cd "$tmp" && find small medium large huge -type f -printf '%s %p\n' | LC_ALL=C sort -k2 > sizes &&
     awk '{print $2}' sizes | xargs -n 256 sha256sum | LC_ALL=C sort -k2 > SHA256SUMS &&
     LC_ALL=C join -1 2 -2 2 -o 1.1,2.1,1.2 SHA256SUMS sizes > MANIFEST && rm sizes)
  echo "$DATA_VERSION" > "$tmp/.version"
  mv "$tmp" "$WWW"
fi
[[ $(wc -l < "$MANIFEST") == 10205 ]] || die "dataset incomplete: run setup.sh --regen"

# ---------------------------------------------------------------- 3. TLS
# ca.pem/ca.key: a self-signed EC P-256 CA (10 years); server.pem/key: a leaf for IP:127.0.0.1 and
# DNS:localhost signed by it. Made again when missing, not verifying, or expiring within a day.
cert_ok() { # cert_ok CERT: verifies against the CA and lasts another day
  [[ -s $1 ]] && openssl verify -CAfile "$BENCH_CA" -purpose sslserver "$1" > /dev/null 2>&1 &&
    openssl x509 -checkend 86400 -noout -in "$1" > /dev/null
}
# leaf NAME SAN CN: a server certificate $TLS_DIR/NAME.pem (+ .key) signed by the CA
leaf() {
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$TLS_DIR/$1.key" \
    -out "$TLS_DIR/$1.csr" -subj "/CN=$3" 2> /dev/null
  printf '%s\n' "subjectAltName=$2" "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=serverAuth" > "$TLS_DIR/$1.ext"
  openssl x509 -req -in "$TLS_DIR/$1.csr" -CA "$BENCH_CA" -CAkey "$TLS_DIR/ca.key" -CAserial "$TLS_DIR/ca.srl" \
    -CAcreateserial -days 825 -extfile "$TLS_DIR/$1.ext" -out "$TLS_DIR/$1.pem" 2> /dev/null
  rm -f "$TLS_DIR/$1.csr" "$TLS_DIR/$1.ext"
  cert_ok "$TLS_DIR/$1.pem" || die "$TLS_DIR/$1.pem does not verify"
}
if ((REGEN)) || ! openssl x509 -checkend 86400 -noout -in "$BENCH_CA" > /dev/null 2>&1 || [[ ! -s $TLS_DIR/ca.key ]]; then
  log "making a local CA in $TLS_DIR"
  rm -rf "$TLS_DIR"; mkdir -p "$TLS_DIR"; chmod 700 "$TLS_DIR"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$TLS_DIR/ca.key" \
    -out "$BENCH_CA" -days 3650 -subj "/CN=haul bench CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2> /dev/null
fi
cert_ok "$TLS_DIR/server.pem" || leaf server "IP:127.0.0.1,DNS:localhost" 127.0.0.1

# ---------------------------------------------------------------- 4. URL lists
for w in "${WORKLOADS[@]}"; do
  awk -v w="$w/" -v b="$BASE_URL/" 'index($3, w) == 1 {print b $3, $3}' "$MANIFEST" | make_lists "$w"
  awk -v w="$w/" -v b="$TLS_BASE_URL/" 'index($3, w) == 1 {print b $3, $3}' "$MANIFEST" | make_lists "$w-tls"
done
sed 's|^|/|' "$LISTS/small.paths" > "$LISTS/small.wrkpaths"   # for wrk (limits.sh)
# proto-tls: 100 small and 4 medium files over the logging port (proto.sh; not timed)
{ grep -m 100 ' small/' "$MANIFEST"; grep -m 4 ' medium/' "$MANIFEST"; } |
  awk -v b="https://$BENCH_HOST:$BENCH_TLS_LOG_PORT/" '{print b $3, $3}' | make_lists proto-tls

# ---------------------------------------------------------------- 5. nginx
mkdir -p "$BENCH_DIR/nginx-tmp" "$RESULTS"
alog="access_log off;"
((ACCESS_LOG)) && alog="access_log $BENCH_DIR/nginx-access.log;"
user=""
[[ $(id -u) == 0 ]] && user="user $(id -un) $(id -gn);"   # workers read a private $BENCH_DIR
tls_server() { # tls_server PORT EXTRA: the HTTPS server block
  cat << EOF
  server {
    listen $BENCH_HOST:$1 ssl http2 backlog=4096;
    root $WWW;
    ssl_certificate $TLS_DIR/server.pem;
    ssl_certificate_key $TLS_DIR/server.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:BENCHTLS:10m;
    ssl_session_timeout 1h;
    $2
  }
EOF
}
cat > "$NGINX_CONF.new" << EOF
# written by scripts/bench/setup.sh
$user
worker_processes 1;
worker_rlimit_nofile 65536;
pid $NGINX_PID;
error_log $BENCH_DIR/nginx-error.log warn;
events { worker_connections 8192; }
http {
$(nginx_http_base "$BENCH_DIR/nginx-tmp")
  $alog
  open_file_cache max=20000 inactive=120s;
  open_file_cache_valid 120s;
  log_format proto '\$server_protocol \$ssl_protocol \$ssl_cipher reused=\$ssl_session_reused conn=\$connection "\$http_user_agent"';
  server {
    listen $BENCH_HOST:$BENCH_PORT backlog=4096;
    root $WWW;
  }
$(tls_server "$BENCH_TLS_PORT" "")
$(tls_server "$BENCH_TLS_LOG_PORT" "access_log $BENCH_DIR/nginx-proto.log proto;")
}
EOF
nginx -t -q -e "$BENCH_DIR/nginx-error.log" -c "$NGINX_CONF.new" -p "$BENCH_DIR/" || die "nginx rejects $NGINX_CONF.new"
if nginx_running; then
  if cmp -s "$NGINX_CONF.new" "$NGINX_CONF"; then
    rm "$NGINX_CONF.new"; log "nginx already running (pid $(cat "$NGINX_PID"))"
  else
    mv "$NGINX_CONF.new" "$NGINX_CONF"; kill -HUP "$(cat "$NGINX_PID")"; sleep 1
    log "nginx (pid $(cat "$NGINX_PID")) reloaded with a new configuration"
  fi
else
  mv "$NGINX_CONF.new" "$NGINX_CONF"
  nginx -e "$BENCH_DIR/nginx-error.log" -c "$NGINX_CONF" -p "$BENCH_DIR/"
  log "nginx started (pid $(cat "$NGINX_PID")): $BASE_URL, $TLS_BASE_URL"
fi

# ---------------------------------------------------------------- 6. warm and check
find "$WWW/small" "$WWW/medium" "$WWW/large" "$WWW/huge" -type f -print0 | xargs -0 -n 1000 cat > /dev/null
for w in "${WORKLOADS[@]}" proto; do
  for l in "$w" "$w-tls"; do
    [[ -s $LISTS/$l.txt ]] || continue
    u=$(head -n 1 "$LISTS/$l.txt")
    for _ in $(seq 50); do curl -q -fsS --cacert "$BENCH_CA" -o /dev/null "$u" 2> /dev/null && break; sleep 0.1; done
    got=$(curl -q -fsS --cacert "$BENCH_CA" "$u" | sha256sum | cut -d' ' -f1) || die "nginx does not serve $u"
    grep -qx "$got" "$LISTS/$l.sha" || die "$u: not the dataset's bytes"
  done
done
log "ready: lists in $LISTS (small medium large huge, each also -tls), CA $BENCH_CA," \
    "dataset $(sha256sum "$MANIFEST" | cut -c1-16)"

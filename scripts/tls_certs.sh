#!/usr/bin/env bash
# scripts/tls_certs.sh DIR: throw-away certificates for TLS distribution
# (tests, bench, demo), made with the openssl CLI, and the
# ssl_dist_optfiles that use them (OTP's format: one file serves BEAM
# nodes, -ssl_dist_optfile, and C-nodes, --ssl-dist-optfile).
#
# In DIR (created if missing):
#   ca.pem                  a test CA
#   node.pem, node.key      signed by it, for every name a test node
#                           has on loopback: localhost, this machine's
#                           short and full host names, and 127.0.0.1 and
#                           ::1 both as dNSName (what OTP's client checks
#                           a node's host part against) and as iPAddress
#   other.pem, other.key    signed by the CA for other.invalid only (a
#                           server whose certificate names another host)
#   rogue-ca.pem, rogue.pem, rogue.key
#                           a second CA and a node certificate it signed
#                           (untrusted by the nodes above)
#   dist.conf               server and client: node.pem, the CA,
#                           verify_peer, fail_if_no_peer_cert
#   other.conf, rogue.conf  the same with other.pem / rogue.pem
# Prints DIR. Keys are EC P-256; certificates last 2 days.
set -euo pipefail
dir=${1:?usage: tls_certs.sh DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
cd "$dir"
days=2
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)

ca() { # ca NAME CN
    openssl req -x509 "${ec[@]}" -keyout "$1.key" -out "$1.pem" \
        -days $days -subj "/CN=$2" 2>/dev/null
}

# leaf NAME CA SAN: a certificate for NAME signed by CA with subjectAltName SAN.
leaf() {
    openssl req "${ec[@]}" -keyout "$1.key" -out "$1.csr" -subj "/CN=$1" \
        2>/dev/null
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n' \
        "$3" >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" \
        -CAcreateserial -out "$1.pem" -days $days -extfile "$1.ext" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
}

# conf NAME CERT: an ssl_dist_optfile using CERT for both sides.
conf() {
    local s="{certfile, \"$dir/$2.pem\"}, {keyfile, \"$dir/$2.key\"},
            {cacertfile, \"$dir/ca.pem\"}, {verify, verify_peer}"
    printf '[{server, [%s,\n            {fail_if_no_peer_cert, true}]},\n {client, [%s]}].\n' \
        "$s" "$s" >"$1.conf"
}

short=$(hostname -s 2>/dev/null || hostname)
full=$(hostname -f 2>/dev/null || echo "$short")
san="DNS:localhost,DNS:$short,DNS:127.0.0.1,DNS:::1,IP:127.0.0.1,IP:::1"
[ "$full" != "$short" ] && [ -n "$full" ] && san="$san,DNS:$full"

ca ca "tether test CA"
ca rogue-ca "tether rogue CA"
leaf node ca "$san"
leaf other ca "DNS:other.invalid"
leaf rogue rogue-ca "$san"
conf dist node
conf other other
conf rogue rogue
chmod 600 ./*.key
echo "$dir"

#!/usr/bin/env bash
# Generates a throwaway CA and one wildcard certificate for *.example.com (plus example.com),
# the shape of certificate that makes browsers coalesce connections across hosts.
# Usage: envoy/gen-certs.sh [DIR]   (default: envoy/certs). Idempotent: keeps existing files.
set -euo pipefail
dir=${1:-"$(dirname "$0")/certs"}
mkdir -p "$dir"
cd "$dir"
[ -s wildcard.crt ] && [ -s wildcard.key ] && [ -s ca.crt ] && exit 0
openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=sni-guard test CA" \
  -keyout ca.key -out ca.crt 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=*.example.com" \
  -keyout wildcard.key -out wildcard.csr 2>/dev/null
printf 'subjectAltName=DNS:*.example.com,DNS:example.com\nextendedKeyUsage=serverAuth\n' > wildcard.ext
openssl x509 -req -in wildcard.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
  -extfile wildcard.ext -out wildcard.crt 2>/dev/null
rm -f wildcard.csr wildcard.ext ca.srl
echo "certificates written to $dir"

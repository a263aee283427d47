#!/usr/bin/env bash
# Gets the CA certificates both functions verify the database's certificate with, and packages them as
# the Lambda layer the template ships (unpacked under /opt):
#
#   target/rds-ca-bundle/global-bundle.pem     Amazon RDS CA bundle: the database's certificate
#                                              (DB_SSL_ROOT_CERT=/opt/global-bundle.pem)
#   target/rds-ca-bundle/amazon-root-ca.pem    Amazon Trust Services roots (Amazon Root CA 1-4): RDS
#                                              Proxy presents an ACM certificate
#                                              (UseRdsProxy; DB_SSL_ROOT_CERT=/opt/amazon-root-ca.pem)
#   target/lambda/rds-ca-bundle/layer.zip      both files as a layer zip (for inspection / CI)
#
# Each is downloaded once; delete it to fetch a fresh copy. Never committed: AWS adds CAs over time,
# so each deploy takes the current ones. Exit status 1 when one cannot be had (no network: put the
# files there by hand).
set -euo pipefail

dir=target/rds-ca-bundle
mkdir -p "$dir"

# fetch <file> <url>...: concatenates the PEM certificates at the URLs into <file>.
fetch() {
  local pem=$dir/$1; shift
  [ -s "$pem" ] && return 0
  : > "$pem.part"
  for url in "$@"; do
    echo "rds-ca-bundle: downloading $url"
    if ! curl --proto '=https' --tlsv1.2 -fsSL --connect-timeout 10 --max-time 60 "$url" >> "$pem.part"; then
      rm -f "$pem.part"
      echo "rds-ca-bundle: cannot download $url; put the file at $pem by hand" >&2
      return 1
    fi
    echo >> "$pem.part"
  done
  local count
  count=$(grep -c -- '-----BEGIN CERTIFICATE-----' "$pem.part" || true)
  if [ "${count:-0}" -lt "$#" ] || ! openssl x509 -in "$pem.part" -noout 2>/dev/null; then
    rm -f "$pem.part"
    echo "rds-ca-bundle: $* did not return PEM certificates" >&2
    return 1
  fi
  mv "$pem.part" "$pem"
  echo "rds-ca-bundle: $count certificates in $pem"
}

fetch global-bundle.pem https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem
fetch amazon-root-ca.pem \
  https://www.amazontrust.com/repository/AmazonRootCA1.pem \
  https://www.amazontrust.com/repository/AmazonRootCA2.pem \
  https://www.amazontrust.com/repository/AmazonRootCA3.pem \
  https://www.amazontrust.com/repository/AmazonRootCA4.pem

mkdir -p target/lambda/rds-ca-bundle
rm -f target/lambda/rds-ca-bundle/layer.zip
(cd "$dir" && python3 -m zipfile -c "$OLDPWD/target/lambda/rds-ca-bundle/layer.zip" global-bundle.pem amazon-root-ca.pem)

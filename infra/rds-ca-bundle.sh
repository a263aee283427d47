#!/usr/bin/env bash
# Gets the Amazon RDS CA bundle that both functions verify the database certificate with, and
# packages it as the Lambda layer the template ships (/opt/global-bundle.pem).
#
#   target/rds-ca-bundle/global-bundle.pem        downloaded once; delete it to fetch a fresh copy
#   target/lambda/rds-ca-bundle/layer.zip         the same file as a layer zip (for inspection / CI)
#
# Never committed: AWS adds CAs to the bundle, so each deploy takes the current one.
# Exit status 1 when the bundle cannot be had (no network: put the file there by hand).
set -euo pipefail

url=https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem
dir=target/rds-ca-bundle
pem=$dir/global-bundle.pem

if [ ! -s "$pem" ]; then
  mkdir -p "$dir"
  echo "rds-ca-bundle: downloading $url"
  if ! curl --proto '=https' --tlsv1.2 -fsSL --connect-timeout 10 --max-time 60 -o "$pem.part" "$url"; then
    rm -f "$pem.part"
    echo "rds-ca-bundle: cannot download $url; put the file at $pem by hand" >&2
    exit 1
  fi
  count=$(grep -c -- '-----BEGIN CERTIFICATE-----' "$pem.part" || true)
  if [ "${count:-0}" -lt 1 ] || ! openssl x509 -in "$pem.part" -noout 2>/dev/null; then
    rm -f "$pem.part"
    echo "rds-ca-bundle: $url did not return a PEM certificate bundle" >&2
    exit 1
  fi
  mv "$pem.part" "$pem"
  echo "rds-ca-bundle: $count certificates in $pem"
fi

mkdir -p target/lambda/rds-ca-bundle
rm -f target/lambda/rds-ca-bundle/layer.zip
(cd "$dir" && python3 -m zipfile -c "$OLDPWD/target/lambda/rds-ca-bundle/layer.zip" global-bundle.pem)

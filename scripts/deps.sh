#!/usr/bin/env bash
# Installs what `make run` / `make test` need and is missing. Idempotent; quiet when all is present.
set -euo pipefail

need_apt=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
[ -e /usr/include/openssl/ssl.h ] || need_apt+=(libssl-dev)
command -v runuser >/dev/null || need_apt+=(util-linux)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "deps: apt-get install ${need_apt[*]}"
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PIP=(python3 -m pip install -q --disable-pip-version-check)
python3 -c 'import moto, flask' 2>/dev/null && command -v moto_server >/dev/null \
  || { echo "deps: pip install moto[server]"; "${PIP[@]}" 'moto[server]==5.2.1'; }
command -v cargo-lambda >/dev/null \
  || { echo "deps: pip install cargo-lambda"; "${PIP[@]}" 'cargo-lambda==1.9.2'; }
command -v cfn-lint >/dev/null \
  || { echo "deps: pip install cfn-lint"; "${PIP[@]}" 'cfn-lint==1.51.0'; }
hash -r

# schemathesis (HTTP fuzzing from openapi.json) in its own venv: it pins libraries moto also uses.
ST_VENV=target/tools/schemathesis
if [ ! -x "$ST_VENV/bin/schemathesis" ]; then
  echo "deps: schemathesis into $ST_VENV"
  python3 -m venv "$ST_VENV"
  "$ST_VENV/bin/pip" install -q --disable-pip-version-check 'schemathesis==4.32.5'
fi

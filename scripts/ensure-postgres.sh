#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers on 127.0.0.1:5432, installing Debian's `postgresql`
# package and starting its cluster when none is running. Prints the database server URL to
# use (without a database name) on its last line.
set -euo pipefail

host=127.0.0.1 port=5432
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

if pg_isready -q -h "$host" -p "$port" 2>/dev/null; then
  echo "${OUTBOX_TEST_DATABASE_URL:-postgres://postgres@$host:$port}"
  exit 0
fi

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  echo "PostgreSQL is not installed: installing Debian's postgresql package" >&2
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >&2
fi

version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
if ! pg_lsclusters -h 2>/dev/null | grep -q "^$version main"; then
  $sudo pg_createcluster "$version" main >&2
fi
echo "starting PostgreSQL $version" >&2
$sudo pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2 || true
for _ in $(seq 1 30); do
  pg_isready -q -h "$host" -p "$port" && break
  sleep 1
done
pg_isready -q -h "$host" -p "$port" || { echo "PostgreSQL did not start" >&2; exit 1; }

# A fresh Debian cluster asks for a password on TCP: give the local superuser a known one
# (this cluster was just started by us for development and tests, and listens on localhost).
as_postgres="runuser -u postgres --"
[ -z "$sudo" ] || as_postgres="sudo -u postgres"
$as_postgres psql -q -c "ALTER USER postgres PASSWORD 'postgres'" >&2
echo "${OUTBOX_TEST_DATABASE_URL:-postgres://postgres:postgres@$host:$port}"

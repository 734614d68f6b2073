#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers on 127.0.0.1:5432, installing Debian's `postgresql`
# package and starting its cluster when none is running. Prints the database server URL to
# use (without a database name) on its last line.
set -euo pipefail

host=127.0.0.1 port=5432
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

cd "$(dirname "$0")/.."
if pg_isready -q -h "$host" -p "$port" 2>/dev/null; then
  # The server this script started on an earlier run, with its development role, or one
  # whose postgres role needs no password here (trust, as on CI machines).
  if [ -z "${OUTBOX_TEST_DATABASE_URL:-}" ] && [ -f target/dev-database-url ]; then
    cat target/dev-database-url
  else
    echo "${OUTBOX_TEST_DATABASE_URL:-postgres://postgres@$host:$port}"
  fi
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

# A fresh Debian cluster asks for a password on TCP. Rather than give the postgres role a
# known one, a superuser for development and tests gets a random password, kept (mode 0600)
# in target/dev-database-url for the next run. This is for a development machine, not a server.
url_file=target/dev-database-url
password=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
as_postgres="runuser -u postgres --"
[ -z "$sudo" ] || as_postgres="sudo -u postgres"
# The password goes on standard input, never on a command line (sudo logs those).
$as_postgres psql -q -v ON_ERROR_STOP=1 >&2 <<SQL
\set password '$password'
SELECT format('CREATE ROLE altinn_outbox_dev SUPERUSER LOGIN PASSWORD %L', :'password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'altinn_outbox_dev') \gexec
ALTER ROLE altinn_outbox_dev PASSWORD :'password';
SQL
mkdir -p target
(umask 077; echo "postgres://altinn_outbox_dev:$password@$host:$port" >"$url_file")
echo "${OUTBOX_TEST_DATABASE_URL:-$(cat "$url_file")}"

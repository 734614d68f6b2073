#!/usr/bin/env bash
# Removes the altinn-outbox service: stops and disables it, removes the unit, the binary and
# the documentation. Keeps /etc/altinn-outbox (config, key, password) unless --purge. Never
# touches the database: the outbox holds your letters and their results, so the SQL to drop
# it is printed for you to run when you mean it.
#
#   deploy/uninstall.sh [--prefix DIR] [--purge]
#
#   --prefix DIR  where install.sh put the binary (default: /usr/local)
#   --purge       also remove /etc/altinn-outbox and its drop-ins
#   DESTDIR=DIR   remove from under DIR instead of / (no systemctl then)
set -euo pipefail

prefix=/usr/local
purge=no
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix=$2; shift 2 ;;
        --purge) purge=yes; shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "uninstall.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
destdir=${DESTDIR:-}

if [ -z "$destdir" ] && [ "$(id -u)" -ne 0 ]; then
    echo "uninstall.sh: run as root (or set DESTDIR)" >&2
    exit 1
fi

systemd=no
[ -z "$destdir" ] && [ -d /run/systemd/system ] && systemd=yes
if [ "$systemd" = yes ]; then
    # Stopping lets requests in flight finish and releases the rest (leases) for another instance.
    systemctl disable --now altinn-outbox.service 2>/dev/null || true
fi

rm -f "$destdir/etc/systemd/system/altinn-outbox.service"
rm -f "$destdir$prefix/bin/altinn-outbox" "$destdir$prefix/sbin/altinn-outbox-admin"
rm -rf "$destdir$prefix/share/doc/altinn-outbox"
if [ "$purge" = yes ]; then
    rm -rf "$destdir/etc/altinn-outbox" "$destdir/etc/systemd/system/altinn-outbox.service.d"
    echo "removed /etc/altinn-outbox (config, key, password)"
else
    echo "kept /etc/altinn-outbox (--purge removes it)"
fi
if [ "$systemd" = yes ]; then
    systemctl daemon-reload
    systemctl reset-failed altinn-outbox.service 2>/dev/null || true
fi

cat <<'EOF'
altinn-outbox is uninstalled. The database is untouched. To remove the outbox from it too
(every letter and its history), as a superuser in the outbox's database:

  BEGIN;
  DROP SCHEMA altinn_outbox CASCADE;
  -- Only if no other sqlx application keeps its migrations in this database:
  DROP TABLE public._sqlx_migrations;
  DROP OWNED BY altinn_outbox_producer, altinn_outbox_worker;
  COMMIT;
  -- Then the roles (first their login members, e.g. altinn_outbox_daemon), in every
  -- database where they hold privileges:
  DROP ROLE altinn_outbox_producer, altinn_outbox_worker;
EOF

#!/usr/bin/env bash
# Installs altinn-outbox as a systemd service. Run as root from a checkout, after
# `cargo build --release`. Idempotent: re-running it (e.g. for an upgrade) replaces the binary,
# the unit and the documentation, and never touches an existing worker.toml or environment file.
#
#   deploy/install.sh [--binary PATH] [--prefix DIR]
#
#   --binary PATH  the binary to install (default: target/release/altinn-outbox)
#   --prefix DIR   where the binary and documentation go (default: /usr/local)
#   DESTDIR=DIR    install under DIR instead of / (for packaging and tests; no systemctl then,
#                  and no root needed)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
binary="${CARGO_TARGET_DIR:-$repo/target}/release/altinn-outbox"
prefix=/usr/local
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary=$2; shift 2 ;;
        --prefix) prefix=$2; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
destdir=${DESTDIR:-}

if [ -z "$destdir" ] && [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (or set DESTDIR to install elsewhere)" >&2
    exit 1
fi
if [ ! -x "$binary" ]; then
    echo "install.sh: no binary at $binary: run 'cargo build --release' first or pass --binary" >&2
    exit 1
fi

# Owners only when root: a DESTDIR install by a user keeps that user's files.
owner=()
[ "$(id -u)" -eq 0 ] && owner=(-o root -g root)

bindir=$destdir$prefix/bin
sbindir=$destdir$prefix/sbin
docdir=$destdir$prefix/share/doc/altinn-outbox
etc=$destdir/etc/altinn-outbox
unitdir=$destdir/etc/systemd/system

install -d -m 0755 "${owner[@]}" "$bindir" "$sbindir" "$docdir" "$unitdir"
# Root only: the config directory holds the key and the database password.
install -d -m 0700 "${owner[@]}" "$etc"

install -m 0755 "${owner[@]}" "$binary" "$bindir/altinn-outbox"
# The admin wrapper names the binary by its installed path.
sed "s|/usr/local/bin/altinn-outbox|$prefix/bin/altinn-outbox|" "$repo/deploy/altinn-outbox-admin" > "$sbindir/altinn-outbox-admin.tmp"
chmod 0755 "$sbindir/altinn-outbox-admin.tmp"
mv "$sbindir/altinn-outbox-admin.tmp" "$sbindir/altinn-outbox-admin"
install -m 0644 "${owner[@]}" "$repo/README.md" "$repo/CHANGELOG.md" "$repo/deploy/roles.sql" "$docdir/"
# The README's links into docs/ resolve beside it.
install -d -m 0755 "${owner[@]}" "$docdir/docs"
install -m 0644 "${owner[@]}" "$repo"/docs/*.md "$docdir/docs/"
install -m 0644 "${owner[@]}" "$repo/deploy/altinn-outbox.env.example" "$repo/deploy/pem-key.conf" "$docdir/"

# The unit names the binary by its installed path.
unit=$(sed -e "s|/usr/local/bin/altinn-outbox|$prefix/bin/altinn-outbox|" \
           -e "s|/usr/local/share/doc/altinn-outbox|$prefix/share/doc/altinn-outbox|" \
           "$repo/deploy/altinn-outbox.service")
printf '%s\n' "$unit" > "$unitdir/altinn-outbox.service.tmp"
chmod 0644 "$unitdir/altinn-outbox.service.tmp"
mv "$unitdir/altinn-outbox.service.tmp" "$unitdir/altinn-outbox.service"

# The settings are the operator's after the first install: never overwritten.
# worker.toml names the key at its /etc path, for admin commands run as root; the service
# reads the same key through its credential (the unit overrides the path).
if [ ! -e "$etc/worker.toml" ]; then
    sed 's|^# key_jwk_file = "/etc/altinn-outbox/maskinporten.jwk.json"|key_jwk_file = "/etc/altinn-outbox/maskinporten.jwk.json"|' \
        "$repo/worker.toml" > "$etc/worker.toml.tmp"
    grep -q '^key_jwk_file = "/etc/altinn-outbox/maskinporten.jwk.json"' "$etc/worker.toml.tmp" \
        || { echo "install.sh: worker.toml no longer has the key_jwk_file example line" >&2; exit 1; }
    chmod 0600 "$etc/worker.toml.tmp"
    mv "$etc/worker.toml.tmp" "$etc/worker.toml"
    echo "installed $etc/worker.toml"
else
    echo "kept $etc/worker.toml"
fi
if [ ! -e "$etc/altinn-outbox.env" ]; then
    install -m 0600 "${owner[@]}" "$repo/deploy/altinn-outbox.env.example" "$etc/altinn-outbox.env"
    echo "installed $etc/altinn-outbox.env"
else
    echo "kept $etc/altinn-outbox.env"
fi

if [ -z "$destdir" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
fi

cat <<EOF
installed $bindir/altinn-outbox, $sbindir/altinn-outbox-admin and $unitdir/altinn-outbox.service

Next steps (README.md, "Quick start on tt02" and "Install in production"): the key
(altinn-outbox keygen), the settings in /etc/altinn-outbox/altinn-outbox.env, the schema
(altinn-outbox-admin migrate, as the schema's owner) and the roles
($prefix/share/doc/altinn-outbox/roles.sql), then: altinn-outbox-admin check, and
systemctl enable --now altinn-outbox.
EOF

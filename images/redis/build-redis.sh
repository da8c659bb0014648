#!/usr/bin/env bash
# Assemble the redis layer of the kit's redis image offline: this host's redis-server (Debian's
# redis-tools package ships the binary; Debian's redis-server package adds only a link to it and
# a system service, which the kit does not want) with the shared libraries it loads (found with
# ldd), and the entry script. `p4cf images build` adds the result to the base image
# (images/redis/Containerfile: ADD redis.tar /).
#
# Usage: build-redis.sh OUTDIR      writes OUTDIR/redis.tar
# Env:   P4CF_REDIS_SERVER          the redis-server binary (default: redis-server on PATH, else
#                                   /usr/bin/redis-check-rdb, the same multi-call binary)
set -euo pipefail

die() { printf 'build-redis: error: %s\n' "$*" >&2; exit 1; }

out=${1:-}
[ -n "$out" ] || die "usage: $0 OUTDIR (the directory that receives redis.tar)"
here=$(cd "$(dirname "$0")" && pwd)
server=${P4CF_REDIS_SERVER:-$(command -v redis-server || true)}
[ -n "$server" ] || [ ! -x /usr/bin/redis-check-rdb ] || server=/usr/bin/redis-check-rdb
[ -n "$server" ] && [ -x "$server" ] || die "no redis-server binary; install Debian's redis-tools (apt-get install redis-tools) or set P4CF_REDIS_SERVER=/path/to/redis-server"
server=$(readlink -f "$server")

root="$out/redis-root"
rm -rf "$root" && mkdir -p "$root/usr/local/bin" "$root/etc/p4cf" "$root/data"
# Installed as redis-server: the binary picks its role from its name (not redis-check-rdb).
cp "$server" "$root/usr/local/bin/redis-server"
cp "$here/redis-entry.sh" "$root/usr/local/bin/p4cf-redis-entry"
chmod 755 "$root/usr/local/bin/p4cf-redis-entry"

LC_ALL=C ldd "$server" 2>/dev/null | awk '/=> \// {print $3} /^\t\/[^ ]+ \(/ {print $1}' | sort -u |
while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done
"$server" --version >/dev/null || die "$server does not run"

tar -C "$root" --numeric-owner -cf "$out/redis.tar" .
rm -rf "$root"
printf '%s\n' "$out/redis.tar"

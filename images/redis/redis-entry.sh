#!/bin/sh
# The kit's redis backend. The config file is named after the backend (redis-<P4CF_HOST_ID>.conf):
# the kit's client reads it from `INFO server` (config_file) to learn which backend serves each
# connection, and that string lives in redis-server's memory, so it moves with a live migration.
# No persistence (save "", appendonly no): the data lives in memory only, which is what a
# migration must carry.
set -e
id=${P4CF_HOST_ID:-$(hostname)}
conf=/etc/p4cf/redis-$id.conf
cat > "$conf" <<EOF
port ${P4CF_PORT:-8000}
bind 0.0.0.0
protected-mode no
save ""
appendonly no
dir /data
EOF
exec /usr/local/bin/redis-server "$conf"

#!/usr/bin/env bash
# Stop the PostgreSQL server pg_up.sh started in DIR (fast shutdown; its data directory stays).
set -uo pipefail
dir=${1:?usage: pg_down.sh DIR}
[ -f "$dir/data/postmaster.pid" ] || exit 0
bin=$(cat "$dir/bin" 2>/dev/null || ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
as=()
[ "$(id -u)" = 0 ] && as=(runuser -u postgres --)
"${as[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1 \
  || kill -KILL "$(head -1 "$dir/data/postmaster.pid")" 2>/dev/null || true

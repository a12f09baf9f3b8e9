#!/usr/bin/env bash
# A private PostgreSQL server on 127.0.0.1 for one test session, all state under DIR:
#   bash scripts/services/pg_up.sh DIR     # ~3 s; writes DIR/uri (mode 600): postgresql://mlflow:<pw>@127.0.0.1:<port>/mlflow
#   bash scripts/services/pg_down.sh DIR
# The password is generated here, per run, and lives only in DIR. As root the server runs as the
# `postgres` system user (PostgreSQL refuses root). Needs `postgresql` (scripts/services/install.sh).
set -euo pipefail
dir=${1:?usage: pg_up.sh DIR}
mkdir -p "$dir" && dir=$(cd "$dir" && pwd)
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$bin" ] || bin=$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")
[ -x "$bin/initdb" ] || { echo "pg_up: PostgreSQL not found: run scripts/services/install.sh as root" >&2; exit 3; }
as=()
if [ "$(id -u)" = 0 ]; then
  id postgres >/dev/null 2>&1 || { echo "pg_up: running as root needs the 'postgres' user" >&2; exit 3; }
  as=(runuser -u postgres --)
  chown postgres "$dir"
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
pw=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
umask 077
printf '%s\n' "$pw" > "$dir/pwfile"
[ ${#as[@]} -eq 0 ] || chown postgres "$dir/pwfile"
"${as[@]}" "$bin/initdb" -D "$dir/data" -U mlflow --pwfile="$dir/pwfile" --auth=scram-sha-256 -E UTF8 \
  --no-sync >"$dir/initdb.log" 2>&1
rm -f "$dir/pwfile"
"${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/data/server.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c shared_buffers=32MB -c max_connections=100" \
  start >/dev/null
PGPASSWORD=$pw "$bin/psql" -h 127.0.0.1 -p "$port" -U mlflow -d postgres -qc "CREATE DATABASE mlflow" >/dev/null
echo "postgresql://mlflow:$pw@127.0.0.1:$port/mlflow" > "$dir/uri"
echo "$bin" > "$dir/bin"
echo "pg_up: PostgreSQL on 127.0.0.1:$port (uri in $dir/uri)"

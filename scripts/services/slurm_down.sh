#!/usr/bin/env bash
# Stop the cluster slurm_up.sh started in DIR: each daemon by its own pid file (TERM, then KILL).
set -uo pipefail
dir=${1:?usage: slurm_down.sh DIR}
stop() {
  local f=$1 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f" 2>/dev/null) || return 0
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
  kill -KILL "$pid" 2>/dev/null || true
}
for d in slurmd slurmctld slurmdbd mariadb munged; do stop "$dir/run/$d.pid"; done

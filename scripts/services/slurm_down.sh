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
# Jobs first, while the controller is up (else their slurmstepd and tasks outlive slurmd).
if [ -f "$dir/slurm.conf" ] && [ -f "$dir/run/slurmctld.pid" ] && kill -0 "$(cat "$dir/run/slurmctld.pid")" 2>/dev/null; then
  SLURM_CONF=$dir/slurm.conf timeout 10 scancel --full --signal=KILL --state=RUNNING --user="$(id -un)" 2>/dev/null
  SLURM_CONF=$dir/slurm.conf timeout 10 scancel --user="$(id -un)" 2>/dev/null
  for _ in $(seq 50); do
    [ -z "$(SLURM_CONF=$dir/slurm.conf timeout 5 squeue -h 2>/dev/null)" ] && break; sleep 0.2
  done
fi
# Each daemon takes ~2 s to exit: those that do not need each other to shut down stop together (the
# controller and slurmd still talk to slurmdbd and munge on the way out; slurmdbd to its database)
stop "$dir/run/slurmd.pid" & stop "$dir/run/slurmctld.pid" & wait
stop "$dir/run/slurmdbd.pid"
stop "$dir/run/mariadb.pid" & stop "$dir/run/munged.pid" & wait

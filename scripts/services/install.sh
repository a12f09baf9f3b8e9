#!/usr/bin/env bash
# Install the services the scale-out tests use: a one-node SLURM cluster (slurm-wlm: slurmctld + slurmd,
# munge; slurmdbd + MariaDB for the accounting that submitit polls with sacct) and a PostgreSQL server. Idempotent: a fast no-op when the binaries are present.
#   bash scripts/services/install.sh            # both
#   bash scripts/services/install.sh postgres   # only one of: slurm postgres
# Installs only as root with apt-get (CI and the dev machines); otherwise prints why and exits 0, and the
# tests that need the missing service skip with that reason.
set -euo pipefail
if [ $# -gt 0 ]; then want=("$@"); else want=(slurm postgres); fi
missing=()
for svc in "${want[@]}"; do
  case "$svc" in
    slurm) for b in slurmctld:slurm-wlm slurmd:slurm-wlm munged:munge slurmdbd:slurmdbd mariadbd:mariadb-server; do
             PATH=$PATH:/usr/sbin command -v "${b%%:*}" >/dev/null || missing+=("${b#*:}")
           done ;;
    postgres) ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null \
                || missing+=(postgresql) ;;
    *) echo "install.sh: unknown service '$svc' (slurm | postgres)" >&2; exit 2 ;;
  esac
done
[ ${#missing[@]} -eq 0 ] && exit 0
missing=($(printf '%s\n' "${missing[@]}" | sort -u))
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "install.sh: not installing ${missing[*]}: needs root and apt-get (tests that need them skip)" >&2
  exit 0
fi
echo "install.sh: apt-get install ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Packages must not start their own daemons on install (the tests start private ones on loopback).
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && made_policy=1; fi
trap '[ $made_policy = 1 ] && rm -f "$policy"' EXIT
apt-get update -qq >/dev/null || apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" gcc libc6-dev >/dev/null

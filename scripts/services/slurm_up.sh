#!/usr/bin/env bash
# A private one-node SLURM cluster on 127.0.0.1, all state under DIR (config, spool, logs, pid files):
#   munged (own socket and key) → MariaDB (accounting database, 127.0.0.1, generated password) →
#   slurmdbd (accounting: sacct, which submitit polls) → slurmctld → slurmd (node `localhost`, all CPUs).
#   bash scripts/services/slurm_up.sh DIR    # prints `export SLURM_CONF=DIR/slurm.conf`; ~15 s
#   bash scripts/services/slurm_down.sh DIR  # stops exactly these daemons (by their pid files)
# Nothing system-wide is touched: no /etc/slurm, no /etc/munge, no system services. Ports are free ones,
# chosen at start. Needs the packages of scripts/services/install.sh (slurm-wlm munge slurmdbd mariadb-server).
set -euo pipefail
dir=${1:?usage: slurm_up.sh DIR}
mkdir -p "$dir" && dir=$(cd "$dir" && pwd)
for bin in munged slurmctld slurmd slurmdbd sacctmgr mariadbd mariadb-install-db mariadb; do
  command -v "$bin" >/dev/null || { echo "slurm_up: $bin not found: run scripts/services/install.sh as root" >&2; exit 3; }
done
user=$(id -un)
mkdir -p "$dir"/{spool,state,log,run,munge,db}
chmod 700 "$dir/munge"
read -r p_db p_dbd p_ctld p_d < <(python3 -c '
import socket; ss=[socket.socket() for _ in range(4)]
[s.bind(("127.0.0.1", 0)) for s in ss]; print(*[s.getsockname()[1] for s in ss])')
cpus=$(nproc)
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
db_pass=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')

# munge: a key of our own, a socket of our own
head -c 1024 /dev/urandom > "$dir/munge/munge.key"
chmod 400 "$dir/munge/munge.key"
munged --force --socket="$dir/munge/munge.sock" --key-file="$dir/munge/munge.key" \
  --pid-file="$dir/run/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/seed"

# MariaDB for slurmdbd, loopback only
mariadb-install-db --no-defaults --user="$user" --datadir="$dir/db" --auth-root-authentication-method=socket \
  --skip-test-db >"$dir/log/mariadb-install.log" 2>&1
(mariadbd --no-defaults --user="$user" --datadir="$dir/db" --bind-address=127.0.0.1 --port="$p_db" \
  --socket="$dir/run/mysql.sock" --pid-file="$dir/run/mariadb.pid" --log-error="$dir/log/mariadb.log" \
  --innodb-buffer-pool-size=32M --skip-name-resolve </dev/null >/dev/null 2>&1 &)
for _ in $(seq 100); do [ -S "$dir/run/mysql.sock" ] && break; sleep 0.2; done
mariadb --no-defaults --socket="$dir/run/mysql.sock" -u root <<SQL
CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$db_pass';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
SQL

auth="AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.sock"
cat > "$dir/slurmdbd.conf" <<CONF
$auth
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$p_dbd
SlurmUser=$user
PidFile=$dir/run/slurmdbd.pid
LogFile=$dir/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$p_db
StorageUser=slurm
StoragePass=$db_pass
StorageLoc=slurm_acct_db
CONF
chmod 600 "$dir/slurmdbd.conf"

cat > "$dir/slurm.conf" <<CONF
ClusterName=cptlaw
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$p_ctld
SlurmdPort=$p_d
$auth
CommunicationParameters=NoInAddrAny
SlurmUser=$user
SlurmdUser=$user
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$p_dbd
AccountingStoragePass=$dir/munge/munge.sock
JobCompType=jobcomp/none
ReturnToService=2
KillWait=5
MinJobAge=30
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
MaxArraySize=1001
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
cat > "$dir/env.sh" <<CONF
export SLURM_CONF=$dir/slurm.conf
CONF
export SLURM_CONF=$dir/slurm.conf

# slurmctld and slurmdbd listen on every address and have no option against it: a bind() shim keeps them
# (and every other daemon here) on loopback.
here=$(cd "$(dirname "$0")" && pwd)
cc=$(command -v cc || command -v gcc || true)
[ -n "$cc" ] || { echo "slurm_up: no C compiler (gcc) to build the loopback bind shim" >&2; exit 3; }
"$cc" -shared -fPIC -O2 -o "$dir/loopback_bind.so" "$here/loopback_bind.c" -ldl
export LD_PRELOAD=$dir/loopback_bind.so
slurmdbd  # reads slurmdbd.conf beside $SLURM_CONF
for _ in $(seq 50); do timeout 5 sacctmgr -i show cluster >/dev/null 2>&1 && break; sleep 0.2; done
timeout 10 sacctmgr -i add cluster cptlaw >/dev/null 2>&1 || true
slurmctld -f "$dir/slurm.conf"
slurmd -f "$dir/slurm.conf" -N localhost
unset LD_PRELOAD
for _ in $(seq 150); do
  state=$(timeout 5 sinfo -h -N -o %t 2>/dev/null || true)
  [ "$state" = idle ] && break
  sleep 0.2
done
if [ "${state:-}" != idle ]; then
  echo "slurm_up: node not idle (state '${state:-none}'); logs in $dir/log" >&2
  tail -5 "$dir"/log/slurm*.log >&2 || true
  exit 1
fi
echo "export SLURM_CONF=$dir/slurm.conf"

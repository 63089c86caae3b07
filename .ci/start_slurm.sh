#!/usr/bin/env bash
# A single-node SLURM on this machine (munged, slurmctld, slurmd; no accounting), for
# tests/test_slurm.py. Needs root and apt-get (Debian/Ubuntu). Idempotent: installs only what is
# missing and starts only daemons not yet running. Never fails: if SLURM cannot be brought up it
# says why and exits 0, and the SLURM test skips.
set -uo pipefail

CONF=/etc/slurm/slurm.conf
MARK="# written by ticlip .ci/start_slurm.sh"
log() { echo "start_slurm: $*" >&2; }
give_up() { log "$*; tests/test_slurm.py will skip"; exit 0; }

[ "$(id -u)" = 0 ] || give_up "not root"

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
    || ! command -v munged >/dev/null; then
  command -v apt-get >/dev/null || give_up "slurm-wlm is not installed and there is no apt-get"
  log "installing slurm-wlm and munge"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || give_up "apt-get update failed"
  # policy-rc.d 101: the packages' postinst must not try to start services (no init system here)
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
  rc=$?
  rm -f /usr/sbin/policy-rc.d
  [ $rc = 0 ] || give_up "apt-get install slurm-wlm munge failed"
fi

# munge: the key, then the daemon (it refuses to run as root, so as the munge user)
mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
if [ ! -s /etc/munge/munge.key ]; then
  if command -v mungekey >/dev/null; then mungekey --create --keyfile=/etc/munge/munge.key
  elif command -v create-munge-key >/dev/null; then create-munge-key -f
  else dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
  fi || give_up "could not create the munge key"
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null
chmod 0700 /etc/munge && chmod 0400 /etc/munge/munge.key && chmod 0755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  runuser -u munge -- munged || give_up "munged did not start"
  for _ in $(seq 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.5; done
  munge -n | unmunge >/dev/null 2>&1 || give_up "munge does not authenticate"
fi

# slurm.conf for this one node; an existing configuration not written here is left alone
host=$(hostname -s)
if [ ! -f "$CONF" ] || grep -qF "$MARK" "$CONF"; then
  cpus=$(nproc)
  total_mb=$(free -m | awk '/^Mem:/ {print $2}')
  mem_mb=$(( total_mb > 2048 ? total_mb - 1024 : total_mb * 3 / 4 ))  # leave room for the OS
  mkdir -p /etc/slurm
  cat > "$CONF" <<EOF
$MARK
ClusterName=ticlip-ci
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=500
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=600
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
fi
mkdir -p /var/spool/slurmctld /var/spool/slurmd /var/log/slurm

pgrep -x slurmctld >/dev/null || slurmctld || give_up "slurmctld did not start (see /var/log/slurm/slurmctld.log)"
pgrep -x slurmd >/dev/null || slurmd || give_up "slurmd did not start (see /var/log/slurm/slurmd.log)"

state=""
for _ in $(seq 60); do
  state=$(sinfo -h -n "$host" -o %T 2>/dev/null | head -1)
  case "$state" in
    idle|mixed|allocated) log "node $host is $state: SLURM is up"; exit 0 ;;
    drain*|down*) scontrol update nodename="$host" state=resume >/dev/null 2>&1 ;;
  esac
  sleep 1
done
give_up "node $host did not become idle (state: '${state:-none}'; see /var/log/slurm/)"

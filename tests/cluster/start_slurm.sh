#!/usr/bin/env bash
# Start a single-node SLURM cluster on this machine (Debian's packages), for the cluster
# test (tests/cluster/test_slurm.py). Needs root (or sudo). Idempotent: a second call
# finds the cluster up and returns. No accounting daemon: jobs are tracked with squeue.
#   tests/cluster/start_slurm.sh          # install if missing, configure, start, wait for the node
#   tests/cluster/start_slurm.sh stop     # stop the daemons
set -euo pipefail

if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi

if [ "${1:-}" = "stop" ]; then
  $sudo pkill -x slurmd || true
  $sudo pkill -x slurmctld || true
  exit 0
fi

if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
  echo "slurm: already up"; exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
  echo "slurm: installing slurmctld, slurmd, munge (apt-get)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    slurmctld slurmd slurm-client munge >/dev/null
fi

host=$(hostname -s)
cpus=$(nproc)
memory=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) - 1024 ))
$sudo mkdir -p /etc/slurm /etc/munge /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge

if [ ! -s /etc/munge/munge.key ]; then
  $sudo dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
$sudo chown -R munge:munge /etc/munge /run/munge 2>/dev/null || true
$sudo chmod 0400 /etc/munge/munge.key
if ! pgrep -x munged >/dev/null; then
  $sudo runuser -u munge -- /usr/sbin/munged
fi

# no cgroups (containers rarely allow them): processes tracked through /proc
$sudo tee /etc/slurm/slurm.conf >/dev/null <<CONF
ClusterName=hm3-test
SlurmctldHost=${host}
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=${host} CPUs=${cpus} RealMemory=${memory} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF

pgrep -x slurmctld >/dev/null || $sudo slurmctld
pgrep -x slurmd >/dev/null || $sudo slurmd

for _ in $(seq 60); do
  if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
    echo "slurm: node ${host} up (${cpus} CPUs, ${memory} MB)"; exit 0
  fi
  sleep 1
done
echo "slurm: the node did not come up; see /var/log/slurm/" >&2
sinfo >&2 || true
exit 1

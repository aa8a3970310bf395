#!/usr/bin/env bash
# A single-node SLURM cluster on this machine: to try `hydra/launcher=slurm` without a cluster, and for the
# `slurm` tests (tests/test_slurm_real.py).
#
#   experiments/cluster/local_slurm.sh up       install slurm-wlm + munge if missing (apt), write slurm.conf,
#                                               start munged, slurmctld, slurmd, wait until the node is idle
#   experiments/cluster/local_slurm.sh down     stop the three daemons
#   experiments/cluster/local_slurm.sh status   one line: up (with the node's state) or down; exit 1 if down
#
# Root only (it installs packages and starts daemons). The node is this machine: all its CPUs, 90% of its
# memory, no GPUs, one partition `debug`, no accounting (so `sacct` fails: submitit's status polls say so).
# Every step prints one line; `up` on a running cluster with the same configuration changes nothing.
set -euo pipefail

PARTITION=debug
CONF=/etc/slurm/slurm.conf
STATE=/var/lib/s5lra-slurm           # controller state, node spool, pid and log files
MUNGE_KEY=/etc/munge/munge.key
MUNGE_PID=/run/munge/munged.pid
NODE=$(hostname -s)

say() { echo "local_slurm: $*"; }
die() { echo "local_slurm: error: $*" >&2; exit 1; }
slurm_version() { dpkg-query -W -f '${Version}' slurm-wlm 2>/dev/null || echo "(not from apt)"; }
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

need_root() {
    [ "$(id -u)" -eq 0 ] || die "must run as root (it installs slurm-wlm and munge with apt and starts daemons): sudo $0 $1"
}

install_packages() {
    if [ "$(command -v slurmctld slurmd sinfo munged | wc -l)" -eq 4 ]; then
        say "slurm-wlm and munge installed (slurm $(slurm_version))"
        return
    fi
    local out
    out=$(mktemp)
    say "installing slurm-wlm and munge with apt (about a minute)"
    timeout 300 apt-get update -q >"$out" 2>&1 ||
        die "apt-get update failed, is Debian's package archive reachable? ($(tail -n 1 "$out"))"
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q --no-install-recommends slurm-wlm munge \
        >"$out" 2>&1 || die "apt-get install slurm-wlm munge failed ($(tail -n 1 "$out"))"
    rm -f "$out"
    say "installed slurm $(slurm_version)"
}

start_munge() {
    if [ ! -s "$MUNGE_KEY" ]; then
        install -d -o munge -g munge -m 700 /etc/munge
        dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
        say "munge key written ($MUNGE_KEY)"
    fi
    chown munge:munge "$MUNGE_KEY" && chmod 400 "$MUNGE_KEY"
    install -d -o munge -g munge -m 700 /etc/munge /var/lib/munge /var/log/munge
    install -d -o munge -g munge -m 755 /run/munge
    if alive "$MUNGE_PID"; then
        say "munged running (pid $(cat "$MUNGE_PID"))"
    else
        su -s /bin/sh munge -c munged || die "munged did not start (see /var/log/munge/munged.log)"
        say "munged started (pid $(cat "$MUNGE_PID"))"
    fi
    munge -n | unmunge >/dev/null || die "munge -n | unmunge failed: munged does not authenticate"
}

write_conf() {
    local cpus mem_mb conf
    cpus=$(nproc)
    mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    conf="# Written by experiments/cluster/local_slurm.sh: a single-node cluster on this machine.
ClusterName=s5lra-local
SlurmctldHost=$NODE
AuthType=auth/munge
SlurmUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
# A job gets SIGTERM at its time limit and SIGKILL this many seconds later.
KillWait=10
NodeName=$NODE CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP"
    mkdir -p /etc/slurm "$STATE/ctld" "$STATE/d"
    if [ -f "$CONF" ] && [ "$(cat "$CONF")" = "$conf" ]; then
        say "$CONF unchanged ($NODE: $cpus CPUs, $mem_mb MB, partition $PARTITION)"
        return
    fi
    if alive "$STATE/slurmctld.pid" || alive "$STATE/slurmd.pid"; then
        say "configuration changed: restarting the daemons"
        stop_slurm
    fi
    printf '%s\n' "$conf" >"$CONF.tmp" && mv "$CONF.tmp" "$CONF"
    say "$CONF written ($NODE: $cpus CPUs, $mem_mb MB, partition $PARTITION, no GPUs, no accounting)"
}

start_daemon() {  # name
    if alive "$STATE/$1.pid"; then
        say "$1 running (pid $(cat "$STATE/$1.pid"))"
    else
        "$1" || die "$1 did not start (see $STATE/$1.log)"
        say "$1 started"
    fi
}

node_state() { sinfo -h -n "$NODE" -o %T 2>/dev/null | head -n 1; }

wait_idle() {
    local state=""
    for _ in $(seq 60); do
        state=$(node_state)
        case "$state" in
            idle*|mixed*|allocated*) say "node $NODE $state"; return ;;
            drain*|down*) scontrol update nodename="$NODE" state=resume 2>/dev/null || true ;;
        esac
        sleep 0.5
    done
    die "node $NODE is '${state:-not known}' after 30 s (see $STATE/slurmctld.log and $STATE/slurmd.log)"
}

stop_pid() {  # name pidfile
    if ! alive "$2"; then
        say "$1 not running"
        return
    fi
    local pid
    pid=$(cat "$2")
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; fi
    say "$1 stopped"
}

stop_slurm() {
    stop_pid slurmd "$STATE/slurmd.pid"
    stop_pid slurmctld "$STATE/slurmctld.pid"
}

case "${1:-}" in
    up)
        need_root up
        install_packages
        start_munge
        write_conf
        start_daemon slurmctld
        start_daemon slurmd
        wait_idle
        ;;
    down)
        need_root down
        stop_slurm
        stop_pid munged "$MUNGE_PID"
        ;;
    status)
        if alive "$STATE/slurmctld.pid" && alive "$STATE/slurmd.pid" && state=$(node_state) && [ -n "$state" ]; then
            say "up: node $NODE $state, partition $PARTITION"
        else
            say "down"
            exit 1
        fi
        ;;
    *)
        echo "usage: $0 up|down|status" >&2
        exit 2
        ;;
esac

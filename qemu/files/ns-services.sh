#!/bin/bash
# stateless QEMU lab: the NFS server of one run. Started by qemu/lib/servers.sh as
#   ip netns exec NS unshare -m --propagation private bash ns-services.sh RUN_DIR
# i.e. inside the run's network namespace and a private mount namespace, so rpcbind's
# /run/rpcbind.sock and port 111 never touch the host. Stays the parent of rpcbind and
# ganesha (reaps them); SIGTERM stops both.
set -uo pipefail
run=$1
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/rpcbind "$run/ganesha-recovery"
# rpcbind -h 127.0.0.1 crashes (double free); -w alone listens on the namespace only.
rpcbind -f -w > "$run/rpcbind.log" 2>&1 &
rpcbind_pid=$!
echo "$rpcbind_pid" > "$run/rpcbind.pid"
for _ in $(seq 50); do [[ -S /run/rpcbind.sock ]] && break; sleep 0.1; done
start_ganesha() {
    /usr/bin/ganesha.nfsd -F -f "$run/ganesha.conf" -L "$run/ganesha.log" -p "$run/ganesha.pid" -N NIV_EVENT &
    ganesha_pid=$!
    echo "$ganesha_pid" > "$run/ganesha.pid.host"
}
# SIGUSR1: an outage (qemu/lab --fault nfs-outage): ganesha is killed hard, as a crashed server
# would be, and started again after the seconds in $run/outage-secs.
outage=0
nfs_outage() {
    outage=1
    echo "outage: ganesha killed at $(cut -d' ' -f1 /proc/uptime)"
    kill -KILL "$ganesha_pid" 2>/dev/null
    wait "$ganesha_pid" 2>/dev/null
    sleep "$(cat "$run/outage-secs")"
    [[ $stopping == 0 ]] || return 0
    start_ganesha
    echo "outage: ganesha started again at $(cut -d' ' -f1 /proc/uptime)"
    outage=0
}
# SIGUSR2: the server gone for good (qemu/lab --fault server-gone): ganesha killed hard, never
# started again; with --nbd, the nbd-server the client is connected to too.
nfs_gone() {
    outage=1
    echo "gone: ganesha killed at $(cut -d' ' -f1 /proc/uptime)"
    kill -KILL "$ganesha_pid" 2>/dev/null
    wait "$ganesha_pid" 2>/dev/null
    local port
    for port in "${!nbd_pids[@]}"; do
        if [[ -n $(ss -Htn state established "( sport = :$port )") ]]; then
            echo "gone: the nbd-server on port $port, the client's, killed at $(cut -d' ' -f1 /proc/uptime)"
            kill -KILL "${nbd_pids[$port]}" 2>/dev/null
            wait "${nbd_pids[$port]}" 2>/dev/null
            unset "nbd_pids[$port]"
        fi
    done
}
stopping=0
stop() { stopping=1; kill -TERM "$ganesha_pid" "$rpcbind_pid" "$syslog_pid" "${nbd_pids[@]}" 2>/dev/null; }
trap nfs_outage USR1
trap nfs_gone USR2
trap stop TERM INT
start_ganesha
# --nbd: the image's nbd-servers, one connection each (-d: in the foreground).
declare -A nbd_pids=()
for conf in "$run"/nbd-*.conf; do
    [[ -f $conf ]] || continue
    port=${conf##*/nbd-}
    port=${port%.conf}
    nbd-server -C "$conf" -d > "$run/nbd-$port.log" 2>&1 &
    nbd_pids[$port]=$!
    echo "$!" > "$run/nbd-$port.pid"
done
# The run's syslog server: what clients send with stateless.log= or DHCP option 7.
python3 "$(dirname "$0")/syslog-receiver.py" "$run/syslog.log" 2> "$run/syslog-receiver-stderr.log" &
syslog_pid=$!
# Until a signal stops the run, or a server exits by itself (not during an outage).
while [[ $stopping == 0 ]]; do
    wait -n
    [[ $outage == 0 ]] || continue
    if ! kill -0 "$ganesha_pid" 2>/dev/null || ! kill -0 "$rpcbind_pid" 2>/dev/null; then break; fi
done
stop
wait

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
/usr/bin/ganesha.nfsd -F -f "$run/ganesha.conf" -L "$run/ganesha.log" -p "$run/ganesha.pid" -N NIV_EVENT &
ganesha_pid=$!
echo "$ganesha_pid" > "$run/ganesha.pid.host"
stop() { kill -TERM "$ganesha_pid" "$rpcbind_pid" 2>/dev/null; }
trap stop TERM INT
wait -n                      # returns when one server exits or a signal arrives
stop
wait

# shellcheck shell=bash
# The servers of one boot: a network namespace of its own, with rpcbind and nfs-ganesha in it.
# Nothing listens on the host: QEMU also runs in the namespace, and its user-mode network
# (slirp) reaches the namespace's ganesha at 10.0.2.2.
#
# Addresses: ganesha needs a non-loopback interface with an address, so the namespace gets a
# veth pair (both ends inside it) with 192.0.2.1/24 from TEST-NET-1 (RFC 5737). Never change
# this to a real private or public range.

LAB_VETH_ADDR=192.0.2.1/24
NS_NAME=""
NS_SERVICES_PID=""

# netns_create NAME: creates the namespace (deleted on exit) with lo and the veth pair up.
netns_create() {
    NS_NAME=$1
    ip netns add "$NS_NAME"
    on_exit netns_delete "$NS_NAME"
    ip -n "$NS_NAME" link set lo up
    ip -n "$NS_NAME" link add stlab0 type veth peer name stlab1
    ip -n "$NS_NAME" addr add "$LAB_VETH_ADDR" dev stlab0
    ip -n "$NS_NAME" link set stlab0 up
    ip -n "$NS_NAME" link set stlab1 up
}

netns_delete() {
    ip netns del "$1" 2>/dev/null || true
}

# ganesha_config RUN_DIR PSEUDO:PATH...: writes RUN_DIR/ganesha.conf exporting each PATH
# read-only under PSEUDO.
ganesha_config() {
    local run_dir=$1 exports="" id=1 spec; shift
    for spec in "$@"; do
        exports+=$(sed -e "s|@ID@|$id|" -e "s|@PSEUDO@|${spec%%:*}|" -e "s|@PATH@|${spec#*:}|" \
            "$LAB_FILES/ganesha-export.conf.in")$'\n'
        id=$((id + 1))
    done
    awk -v exports="$exports" '{ if ($0 == "@EXPORTS@") printf "%s", exports; else print }' \
        "$LAB_FILES/ganesha.conf.in" | sed "s|@RUN_DIR@|$run_dir|g" > "$run_dir/ganesha.conf"
}

# servers_start RUN_DIR PSEUDO:PATH...: namespace, rpcbind and ganesha, ready for mounts.
servers_start() {
    local run_dir=$1 start i; shift
    start=$(now)
    netns_create "$(basename "$run_dir")"
    ganesha_config "$run_dir" "$@"
    ip netns exec "$NS_NAME" unshare -m --propagation private \
        bash "$LAB_FILES/ns-services.sh" "$run_dir" > "$run_dir/ns-services.log" 2>&1 &
    NS_SERVICES_PID=$!
    on_exit servers_stop
    # ganesha takes about 3 s; the guest must not try to mount before it listens.
    for ((i = 0; i < 200; i++)); do
        pid_alive "$NS_SERVICES_PID" || break
        if ip netns exec "$NS_NAME" ss -Hltn | awk '{print $4}' | grep -q ':2049$' &&
           ip netns exec "$NS_NAME" ss -Hltn | awk '{print $4}' | grep -q ':20048$'; then
            log "NFS server ready in namespace $NS_NAME after $(elapsed "$start") s"
            return 0
        fi
        sleep 0.1
    done
    tail -n 20 "$run_dir/ganesha.log" "$run_dir/rpcbind.log" "$run_dir/ns-services.log" >&2 2>/dev/null || true
    die "nfs-ganesha did not listen on 2049 and 20048 in namespace $NS_NAME within 20 s"
}

# Stops rpcbind and ganesha (by PID, via their parent in the namespace), deletes the namespace.
servers_stop() {
    local run_dir=$LAB_CACHE/runs/$NS_NAME pid
    [[ -n $NS_SERVICES_PID ]] || return 0
    kill_wait "$NS_SERVICES_PID" 15
    # If the parent had to be killed, its children may still run: stop them by their PIDs.
    # shellcheck disable=SC2013 # one PID per file
    for pid in $(cat "$run_dir/ganesha.pid.host" "$run_dir/rpcbind.pid" 2>/dev/null); do
        case $(cat "/proc/$pid/comm" 2>/dev/null) in
            ganesha.nfsd|rpcbind) kill_wait "$pid" 5 ;;
        esac
    done
    wait "$NS_SERVICES_PID" 2>/dev/null || true
    NS_SERVICES_PID=""
    netns_delete "$NS_NAME"
}

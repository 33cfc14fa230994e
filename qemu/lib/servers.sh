# shellcheck shell=bash
# The servers of one boot: a network namespace of its own, with rpcbind and nfs-ganesha in it.
# Nothing listens on the host: QEMU also runs in the namespace, and its user-mode network
# (slirp) reaches the namespace's ganesha at 10.0.2.2.
#
# Addresses: ganesha needs a non-loopback interface with an address, so the namespace gets a
# veth pair (both ends inside it) with 192.0.2.1/24 from TEST-NET-1 (RFC 5737). Never change
# this to a real private or public range.

LAB_VETH_ADDR=192.0.2.1/24
# The client's network with --net tap: a bridge in the namespace with a tap for QEMU, and
# dnsmasq as the DHCP server. TEST-NET-2 (RFC 5737), again never a real range.
LAB_TAP_NET=198.51.100
NS_NAME=""
NS_SERVICES_PID=""
NS_STARTED=""
DNSMASQ_PID=""
# --second-server: its namespace, and the parent of its ganesha there.
SECOND_NS=""
SECOND_SERVICES_PID=""
# The second NFS server's address for the guest (a guestfwd of slirp, NFSv4 on port 2049).
# shellcheck disable=SC2034 # boot.sh uses it
LAB_SECOND_SERVER=10.0.2.5

# netns_create NAME: creates the namespace (deleted on exit) with lo and the veth pair up.
netns_create() {
    NS_NAME=$1
    netns_setup "$NS_NAME"
}

# netns_setup NAME: the namespace NAME (deleted on exit), lo and the veth pair up.
netns_setup() {
    ip netns add "$1"
    on_exit netns_delete "$1"
    ip -n "$1" link set lo up
    ip -n "$1" link add stlab0 type veth peer name stlab1
    ip -n "$1" addr add "$LAB_VETH_ADDR" dev stlab0
    ip -n "$1" link set stlab0 up
    ip -n "$1" link set stlab1 up
}

netns_delete() {
    ip netns del "$1" 2>/dev/null || true
}

# netns_bridge NAME ADDR/LEN: a bridge in the namespace with ganesha's address ADDR on it, for
# clients attached to it (a tap for QEMU, or benches/storm's client namespaces).
netns_bridge() {
    ip -n "$NS_NAME" link add "$1" type bridge
    ip -n "$NS_NAME" addr add "$2" dev "$1"
    ip -n "$NS_NAME" link set "$1" up
}

# ganesha_config RUN_DIR PSEUDO:PATH...: writes RUN_DIR/ganesha.conf exporting each PATH
# read-only under PSEUDO, with NFSv3 and v4 (LAB_NFS_PROTOCOLS=3: v3 only, server and exports).
ganesha_config() {
    local run_dir=$1 exports="" id=1 spec; shift
    for spec in "$@"; do
        exports+=$(sed -e "s|@ID@|$id|" -e "s|@PSEUDO@|${spec%%:*}|" -e "s|@PATH@|${spec#*:}|" \
            "$LAB_FILES/ganesha-export.conf.in")$'\n'
        id=$((id + 1))
    done
    awk -v exports="$exports" '{ if ($0 == "@EXPORTS@") printf "%s", exports; else print }' \
        "$LAB_FILES/ganesha.conf.in" | sed -e "s|@RUN_DIR@|$run_dir|g" \
        -e "s|Protocols = 3, 4;|Protocols = ${LAB_NFS_PROTOCOLS:-3, 4};|" > "$run_dir/ganesha.conf"
}

# The second NBD server's address for the guest (--nbd): a guestfwd of slirp.
# shellcheck disable=SC2034 # boot.sh uses it
LAB_NBD_SECOND=10.0.2.5

# nbd_config RUN_DIR IMAGE: the configs of two nbd-servers exporting IMAGE read-only as `root`,
# on 127.0.0.1:10809 and :10810 of the namespace; ns-services.sh starts them.
nbd_config() {
    local run_dir=$1 image=$2 port
    for port in 10809 10810; do
        printf '[generic]\n\tlistenaddr = 127.0.0.1\n\tport = %s\n[root]\n\texportname = %s\n\treadonly = true\n' \
            "$port" "$image" > "$run_dir/nbd-$port.conf"
    done
}

# ns_services NS RUN_DIR: qemu/files/ns-services.sh (rpcbind, ganesha, the syslog receiver, the
# nbd-servers RUN_DIR has configs for) in the namespace NS and a private mount namespace; its
# pid in NS_STARTED.
ns_services() {
    ip netns exec "$1" unshare -m --propagation private \
        bash "$LAB_FILES/ns-services.sh" "$2" > "$2/ns-services.log" 2>&1 &
    NS_STARTED=$!
}

# ns_listening NS PID PORT...: waits, 20 s at most and while PID lives, until NS listens on
# every PORT (TCP).
ns_listening() {
    local ns=$1 pid=$2 i port listening missing; shift 2
    for ((i = 0; i < 200; i++)); do
        pid_alive "$pid" || return 1
        listening=$(ip netns exec "$ns" ss -Hltn | awk '{print $4}')
        missing=0
        for port in "$@"; do grep -q ":$port\$" <<< "$listening" || missing=1; done
        [[ $missing == 1 ]] || return 0
        sleep 0.1
    done
    return 1
}

# ns_services_stop PID RUN_DIR NS: stops the ns-services.sh PID and, if it had to be killed, the
# servers it started (by the pids in RUN_DIR); deletes NS.
ns_services_stop() {
    local pid=$1 run_dir=$2 child
    kill_wait "$pid" 15
    # shellcheck disable=SC2013 # one PID per file
    for child in $(cat "$run_dir/ganesha.pid.host" "$run_dir/rpcbind.pid" "$run_dir"/nbd-*.pid 2>/dev/null); do
        case $(cat "/proc/$child/comm" 2>/dev/null) in
            ganesha.nfsd|rpcbind|nbd-server) kill_wait "$child" 5 ;;
        esac
    done
    wait "$pid" 2>/dev/null || true
    netns_delete "$3"
}

# servers_start RUN_DIR PSEUDO:PATH...: namespace, rpcbind and ganesha (and --nbd's nbd-servers),
# ready for mounts.
servers_start() {
    local run_dir=$1 start ports=(2049 20048); shift
    start=$(now)
    netns_create "$(basename "$run_dir")"
    ganesha_config "$run_dir" "$@"
    [[ ! -f $run_dir/nbd-10809.conf ]] || ports+=(10809 10810)
    ns_services "$NS_NAME" "$run_dir"
    NS_SERVICES_PID=$NS_STARTED
    on_exit servers_stop
    # ganesha takes about 3 s; the guest must not try to mount before it listens.
    if ns_listening "$NS_NAME" "$NS_SERVICES_PID" "${ports[@]}"; then
        log "NFS server ready in namespace $NS_NAME after $(elapsed "$start") s"
        return 0
    fi
    tail -n 20 "$run_dir/ganesha.log" "$run_dir/rpcbind.log" "$run_dir/ns-services.log" >&2 2>/dev/null || true
    die "nfs-ganesha did not listen on ${ports[*]} in namespace $NS_NAME within 20 s"
}

# servers_start_second RUN_DIR PSEUDO:PATH...: a second NFS server (qemu/lab --second-server):
# rpcbind and ganesha with the same exports in a namespace of their own (NS_NAME-b), run dir
# RUN_DIR/second. The guest reaches it at $LAB_SECOND_SERVER:2049 (NFSv4: one port) through
# slirp's guestfwd, which runs `ip netns exec` into it and socat for each connection.
servers_start_second() {
    local run_dir=$1/second; shift
    mkdir -p "$run_dir"
    SECOND_NS=$NS_NAME-b
    netns_setup "$SECOND_NS"
    ganesha_config "$run_dir" "$@"
    ns_services "$SECOND_NS" "$run_dir"
    SECOND_SERVICES_PID=$NS_STARTED
    on_exit servers_stop_second
    if ns_listening "$SECOND_NS" "$SECOND_SERVICES_PID" 2049; then
        log "second NFS server ready in namespace $SECOND_NS"
        return 0
    fi
    tail -n 20 "$run_dir/ganesha.log" "$run_dir/ns-services.log" >&2 2>/dev/null || true
    die "the second nfs-ganesha did not listen on 2049 in namespace $SECOND_NS within 20 s"
}

servers_stop_second() {
    [[ -n $SECOND_SERVICES_PID ]] || return 0
    ns_services_stop "$SECOND_SERVICES_PID" "$LAB_CACHE/runs/$NS_NAME/second" "$SECOND_NS"
    SECOND_SERVICES_PID=""
}

# Stops rpcbind and ganesha (by PID, via their parent in the namespace), deletes the namespace.
servers_stop() {
    [[ -n $NS_SERVICES_PID ]] || return 0
    ns_services_stop "$NS_SERVICES_PID" "$LAB_CACHE/runs/$NS_NAME" "$NS_NAME"
    NS_SERVICES_PID=""
}

# tap_network_start RUN_DIR MAC HOSTNAME [DHCP [HOSTILE [ROOT_PATH]]]: the bridge (.1, where ganesha also
# answers) and the tap QEMU attaches to, and (unless DHCP is 0) dnsmasq giving MAC the address
# .15 and HOSTNAME (none when empty), the domain, a router, a DNS server and the log server (the
# run's syslog receiver, ns-services.sh; DHCP option 7); with HOSTILE (a set
# of qemu/files/hostile-dhcp.py) that server instead; ROOT_PATH: DHCP option 17 for MAC. No ping
# check: the offer comes at once.
tap_network_start() {
    local run_dir=$1 mac=$2 hostname=$3 dhcp=${4:-1} hostile=${5:-} root_path=${6:-} extra=()
    [[ -z $root_path ]] || extra=(--dhcp-option="option:root-path,$root_path")
    netns_bridge stlabbr "$LAB_TAP_NET.1/24"
    ip -n "$NS_NAME" tuntap add dev stlabtap mode tap
    ip -n "$NS_NAME" link set stlabtap master stlabbr
    ip -n "$NS_NAME" link set stlabtap up
    [[ $dhcp == 1 ]] || return 0
    if [[ -n $hostile ]]; then
        ip netns exec "$NS_NAME" python3 "$LAB_FILES/hostile-dhcp.py" stlabbr "$run_dir/hostile-dhcp.log" "$hostile" \
            2> "$run_dir/hostile-dhcp-stderr.log" &
        DNSMASQ_PID=$!
        on_exit tap_network_stop
        return 0
    fi
    ip netns exec "$NS_NAME" dnsmasq --keep-in-foreground --conf-file=/dev/null --port=0 \
        --interface=stlabbr --bind-interfaces --no-ping --log-dhcp --log-facility="$run_dir/dnsmasq.log" \
        --dhcp-leasefile="$run_dir/dnsmasq.leases" \
        --dhcp-range="$LAB_TAP_NET.100,$LAB_TAP_NET.150,255.255.255.0,1h" \
        --dhcp-host="$mac,$LAB_TAP_NET.15${hostname:+,$hostname}" --domain="$BOOT_DOMAIN" \
        --dhcp-option="option:router,$LAB_TAP_NET.1" --dhcp-option="option:dns-server,$LAB_TAP_NET.1" \
        --dhcp-option="option:log-server,$LAB_TAP_NET.1" "${extra[@]}" &
    DNSMASQ_PID=$!
    on_exit tap_network_stop
}

tap_network_stop() {
    [[ -n $DNSMASQ_PID ]] || return 0
    kill_wait "$DNSMASQ_PID" 5
    wait "$DNSMASQ_PID" 2>/dev/null || true
    DNSMASQ_PID=""
}

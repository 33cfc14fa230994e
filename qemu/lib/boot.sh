# shellcheck shell=bash
# Booting one diskless client under QEMU (TCG), and `lab clean`.
#
# The kernel configures the network itself (ip=dhcp from slirp's DHCP: address 10.0.2.15,
# hostname option from `hostname=`) and mounts the NFS root read-only, then runs
# init=/boot/stateless. Results come back on a small raw disk (virtio, serial stlab-result)
# onto which /lab/check.sh writes a tar archive.

BOOT_MAC=52:54:00:12:34:56
BOOT_DEAD_MAC=52:54:00:12:34:99  # --dead-nic: the NIC on a network with nothing else on it
BOOT_DOMAIN=lab.example
BOOT_NFS_SERVER=10.0.2.2      # slirp's address for the host side (here: the run's namespace)
BOOT_RESULT_SIZE=64M       # sparse; the tar stops at its end marker

boot_usage_error() { die "$* (see qemu/lab --help)"; }

# nfsroot= for the image's export at /PSEUDO on SERVER: boot_nfsroot SERVER /PSEUDO.
# NFSv3 only: with vers=4.2 the kernel's nfsroot
# retried for about 97 s, then "VFS: Unable to mount root fs via NFS" (not investigated).
# rsize/wsize: the kernel's nfsroot defaults to 4096 (fs/nfs/nfsroot.c), which makes reading
# /boot/stateless alone take ~50 READs; 1 MiB (ganesha's maximum) is what an admin sets.
boot_nfsroot() {
    echo "$1:$2,vers=3,tcp,port=2049,mountport=20048,mountproto=tcp,nolock,rsize=1048576,wsize=1048576"
}

# With lab.check=1 the image's init runs /lab/check.sh and powers off: systemd through
# lab-check.service (after multi-user.target), OpenRC through /etc/rc.local at the end of its
# runlevel.
BOOT_CHECK_ARG=lab.check=1

# boot_pxe_tree DIR KERNEL APPEND [INITRD [ENTRY]]: TFTP root for iPXE (QEMU's NIC ROM) -> pxelinux ->
# kernel (and initramfs). ENTRY (--pxe-config): an admin's pxelinux.cfg or iPXE script instead of
# the lab's entry, APPEND added to its APPEND or kernel lines (boot_pxe_bootfile names the file).
boot_pxe_tree() {
    local dir=$1 kernel=$2 append=$3 initrd=${4:-} entry=${5:-}
    mkdir -p "$dir/pxelinux.cfg"
    cp /usr/lib/PXELINUX/pxelinux.0 /usr/lib/syslinux/modules/bios/ldlinux.c32 "$dir/"
    cp "$kernel" "$dir/vmlinuz"
    [[ -z $initrd ]] || cp "$initrd" "$dir/initrd.img"
    if [[ -n $entry ]]; then
        awk -v words="$append" '/^[[:space:]]*(APPEND|kernel)[[:space:]]/ { $0 = $0 " " words } { print }' "$entry" \
            > "$dir/$([[ $(boot_pxe_bootfile "$entry") == pxelinux.0 ]] && echo pxelinux.cfg/default || echo boot.ipxe)"
        return 0
    fi
    if [[ -n $initrd ]]; then
        append="initrd=initrd.img $append"
    fi
    cat > "$dir/pxelinux.cfg/default" <<EOF
DEFAULT diskless
PROMPT 0
TIMEOUT 0
LABEL diskless
  KERNEL vmlinuz
  APPEND $append
EOF
}

# boot_pxe_bootfile [ENTRY]: the bootfile QEMU's iPXE gets: boot.ipxe for an iPXE script.
boot_pxe_bootfile() {
    [[ -n ${1:-} ]] && head -n 1 "$1" | grep -q '^#!ipxe' && echo boot.ipxe || echo pxelinux.0
}

# boot_wait PID TIMEOUT [UNTIL]: waits for QEMU to exit; kills it (by PID) after TIMEOUT seconds,
# or as soon as the serial log matches the extended regex UNTIL.
# Sets BOOT_TIMED_OUT=1 when it had to kill at the timeout, BOOT_REACHED=1 when UNTIL matched.
boot_wait() {
    local pid=$1 timeout=$2 until=${3:-} start next=30
    start=$(now)
    BOOT_TIMED_OUT=0
    BOOT_REACHED=0
    BOOT_LOGIN_AFTER=""
    BOOT_OUTAGE=none
    BOOT_GONE=none
    BOOT_BREAKS_ANSWERED=0
    BOOT_ANSWERED_AT=0
    while pid_alive "$pid"; do
        boot_faults_on_console
        if [[ -z $BOOT_LOGIN_AFTER && -f $BOOT_OUT/serial.log ]] && grep -qa ' login: ' "$BOOT_OUT/serial.log"; then
            BOOT_LOGIN_AFTER=$(elapsed "$start")
        fi
        if [[ -n $until && -f $BOOT_OUT/serial.log ]] && tr -d '\r' < "$BOOT_OUT/serial.log" 2>/dev/null | grep -qE "$until"; then
            log "the console shows /$until/ after $(elapsed "$start") s: stopping the client"
            BOOT_REACHED=1
            sleep 1
            kill_wait "$pid" 5
            break
        fi
        if awk -v a="$start" -v b="$(now)" -v t="$timeout" 'BEGIN { exit !(b - a >= t) }'; then
            warn "QEMU still running after $timeout s: killing it (pid $pid)"
            BOOT_TIMED_OUT=1
            kill_wait "$pid" 5
            break
        fi
        if awk -v a="$start" -v b="$(now)" -v n="$next" 'BEGIN { exit !(b - a >= n) }'; then
            log "  ... guest running for $(elapsed "$start") s: $(tail -n 1 "$BOOT_OUT/serial.log" 2>/dev/null | tr -d '\r' | sed 's/\x1b\[[0-9;?]*[A-Za-z]//g' | cut -c1-90)"
            next=$((next + 30))
        fi
        sleep 0.2
    done
    # QEMU may have exited (a power-off) right after printing UNTIL.
    if [[ -n $until && $BOOT_REACHED == 0 && -f $BOOT_OUT/serial.log ]] && tr -d '\r' < "$BOOT_OUT/serial.log" | grep -qE "$until"; then
        BOOT_REACHED=1
    fi
}

# What the console starts while the guest runs: the NFS outage (--fault nfs-outage) once the
# console shows $FAULT_OUTAGE_AT; with --answer-breaks, a command and `exit` typed into each
# shell that waits on it (stateless.break=, stateless.emergency=shell).
boot_faults_on_console() {
    [[ -f $BOOT_OUT/serial.log ]] || return 0
    if [[ $BOOT_FAULTS == *" nfs-outage "* && $BOOT_OUTAGE == none ]] &&
        grep -qaF "$FAULT_OUTAGE_AT" "$BOOT_OUT/serial.log"; then
        log "the console shows '$FAULT_OUTAGE_AT': killing the NFS server for $FAULT_OUTAGE_SECS s"
        kill -USR1 "$NS_SERVICES_PID"
        BOOT_OUTAGE=started
    fi
    # copy-server-gone: the server the copy into memory reads from (the one with the guest's
    # connection), killed for good at the copy's first progress line.
    if [[ $BOOT_FAULTS == *" copy-server-gone "* && $BOOT_GONE == none ]] &&
        grep -qaE "$FAULT_COPY_GONE_AT" "$BOOT_OUT/serial.log"; then
        if [[ -n $(ip netns exec "$NS_NAME" ss -Htn state established '( sport = :2049 )') ]]; then
            log "the copy into memory is under way: killing the first NFS server (10.0.2.2) for good"
            kill -USR2 "$NS_SERVICES_PID"
        else
            log "the copy into memory is under way: killing the second NFS server ($LAB_SECOND_SERVER) for good"
            kill -USR2 "$SECOND_SERVICES_PID"
        fi
        BOOT_GONE=killed
    fi
    if [[ $BOOT_FAULTS == *" server-gone "* ]]; then
        case $BOOT_GONE in
            none)
                if grep -qaF "$FAULT_GONE_AT" "$BOOT_OUT/serial.log"; then
                    log "the console shows '$FAULT_GONE_AT': killing the NFS server for good"
                    kill -USR2 "$NS_SERVICES_PID"
                    BOOT_GONE=killed
                fi ;;
            killed)
                if grep -qa ' login: ' "$BOOT_OUT/serial.log"; then
                    log "logging in as root on the console, the server gone"
                    printf 'root\n' >&"$BOOT_SERIAL_IN"
                    BOOT_GONE=login
                fi ;;
            login)
                if tr -d '\r' < "$BOOT_OUT/serial.log" | grep -qa 'root@[^ ]*:~# '; then
                    # shellcheck disable=SC2016 # expanded by the guest's shell
                    printf 'touch /run/lab-logged-in; echo lab-login-$((6 * 7))\n' >&"$BOOT_SERIAL_IN"
                    BOOT_GONE=typed
                fi ;;
        esac
    fi
    # A shell waits for input once its prompt ("# ", root's) starts a line of the console after
    # the last answer (the kernel may print on after it); the echo of what was typed is no prompt.
    if [[ $BOOT_ANSWER_BREAKS == 1 ]]; then
        local size prompts
        size=$(stat -c %s "$BOOT_OUT/serial.log")
        # Whole reads (no grep -q inside a pipeline: under pipefail its early exit fails it).
        # Exactly the bytes up to $size: the next look starts where this one ended.
        prompts=$(head -c "$size" "$BOOT_OUT/serial.log" | tail -c +$((BOOT_ANSWERED_AT + 1)) | tr -d '\r' |
            grep -a '^# ' || true)
        if ((size > BOOT_ANSWERED_AT)) && [[ -n $prompts ]] && grep -qv '^# echo lab-typed-in-break-shell-' <<< "$prompts"; then
            BOOT_BREAKS_ANSWERED=$((BOOT_BREAKS_ANSWERED + 1))
            BOOT_ANSWERED_AT=$size
            log "answering shell $BOOT_BREAKS_ANSWERED on the console"
            printf 'echo lab-typed-in-break-shell-%s; exit\n' "$BOOT_BREAKS_ANSWERED" >&"$BOOT_SERIAL_IN"
        fi
    fi
}

# boot_leftovers RUN_DIR: what this boot left on the host (processes of the run, mounts under
# its folder, its network namespace), as one line; empty when nothing.
boot_leftovers() {
    local run_dir=$1 p args found=()
    for p in /proc/[0-9]*; do
        # Read without a process of its own, which would hold the names in its command line.
        mapfile -d '' args 2>/dev/null < "$p/cmdline" || continue
        # "$run_dir/": another run's folder may start with this one's name (stlab-2345, stlab-23456).
        if [[ "${args[*]}" == *"$run_dir/"* || "${args[*]}" == *"$BOOT_OUT/serial.log"* ]]; then
            found+=("process ${p#/proc/} (${args[0]:-?})")
        fi
    done
    if awk -v d="$run_dir/" 'index($2, d) == 1 { found = 1 } END { exit !found }' /proc/mounts; then
        found+=("mounts under $run_dir")
    fi
    if ip netns list | awk '{print $1}' | grep -qxF "$NS_NAME"; then found+=("network namespace $NS_NAME"); fi
    if [[ -n $SECOND_NS ]] && ip netns list | awk '{print $1}' | grep -qxF "$SECOND_NS"; then
        found+=("network namespace $SECOND_NS")
    fi
    echo "${found[*]}"
}

BOOT_QEMU_PID=""
# Exit cleanup: QEMU must never outlive the lab.
boot_kill_qemu() {
    [[ -n $BOOT_QEMU_PID ]] || return 0
    kill_wait "$BOOT_QEMU_PID" 5
    wait "$BOOT_QEMU_PID" 2>/dev/null || true
    BOOT_QEMU_PID=""
}

# boot_fact NAME: one value from the extracted facts.txt ("-" if missing).
boot_fact() {
    local v
    v=$(sed -n "s/^$1=//p" "$BOOT_OUT/result/facts.txt" 2>/dev/null | tail -n 1)
    echo "${v:--}"
}

# The local disks of --disks (boot_disks): a swap area labelled lab-swap, an unlabelled one, an
# ext4 filesystem labelled lab-scratch (with a last boot's files), and 16 MiB of random bytes (no
# signature); each a virtio
# disk with serial stlab-<name>. The unlabelled swap and the random disk must come back byte for
# byte (boot_disks_untouched).
BOOT_DISKS=(swap other-swap scratch random)

# boot_disks DIR: makes the disks' images in DIR.
boot_disks() {
    local dir=$1
    mkdir -p "$dir"
    truncate -s 32M "$dir/swap.img" "$dir/other-swap.img"
    truncate -s 128M "$dir/scratch.img"
    mkswap -q -L lab-swap "$dir/swap.img" > /dev/null
    mkswap -q "$dir/other-swap.img" > /dev/null
    # As a disk a client used before: the last boot's files in stateless/ (to go), and a
    # file of the admin's beside it (to stay).
    mkdir -p "$dir/scratch-tree/stateless/boot/dirs/etc/upper/stateless-lab" "$dir/scratch-tree/keep"
    echo "the last boot's" > "$dir/scratch-tree/stateless/boot/dirs/etc/upper/stateless-lab/stale"
    echo "the admin's" > "$dir/scratch-tree/keep/notes.txt"
    mkfs.ext4 -q -L lab-scratch -d "$dir/scratch-tree" "$dir/scratch.img"
    head -c 16M /dev/urandom > "$dir/random.img"
    sha256sum "$dir/other-swap.img" "$dir/random.img" > "$dir/untouched.sha256"
}

# boot_disks_untouched DIR: yes when the disks no label named came back byte for byte, and the
# admin's file beside stateless/ on the scratch disk is still there.
boot_disks_untouched() {
    sha256sum --quiet -c "$1/untouched.sha256" > /dev/null 2>&1 &&
        [[ $(debugfs -R "cat /keep/notes.txt" "$1/scratch.img" 2>/dev/null) == "the admin's" ]] && echo yes || echo no
}

# boot_install_package ROOT IMAGE DEB: installs the package into the per-run copy with dpkg in a
# chroot, as an admin installs it into an image; the binary under test is then the package's
# /usr/sbin/stateless (the lab's /boot/stateless goes). What dpkg writes in place (its log, its
# database) is copied first: the run is a hard-link copy of the cached image.
boot_install_package() {
    local root=$1 image=$2 deb=$3 dir
    for dir in var/lib/dpkg var/log; do
        rm -rf "${root:?}/$dir"
        cp -a "$(image_root "$image")/$dir" "$root/$dir"
    done
    rm -f "$root/boot/stateless"
    cp "$deb" "$root/tmp/stateless.deb"
    run_logged "dpkg -i $(basename "$deb") (in the $image export)" "$BOOT_OUT/package.log" \
        chroot_run "$root" dpkg -i /tmp/stateless.deb
    rm -f "$root/tmp/stateless.deb"
}

# boot_package_initramfs ROOT RELEASE LOG: the package's kernel hook builds the initramfs, as
# when a kernel is installed into the image: /etc/stateless/initramfs.conf given an OUTPUT,
# then the kernel package's postinst run-parts of /etc/kernel/postinst.d.
boot_package_initramfs() {
    local root=$1 release=$2 logfile=$3
    printf 'OUTPUT=/boot/stateless.img-%%v\nNIC=virtio_net,e1000\n' > "$root/etc/stateless/initramfs.conf.new"
    mv "$root/etc/stateless/initramfs.conf.new" "$root/etc/stateless/initramfs.conf"
    run_logged "run-parts /etc/kernel/postinst.d $release (in the export)" "$logfile" \
        chroot_run "$root" env DEB_MAINT_PARAMS=configure run-parts --verbose --exit-on-error \
        --arg="$release" --arg="/boot/vmlinuz-$release" /etc/kernel/postinst.d
    [[ -f $root/boot/stateless.img-$release ]] || die "the kernel hook built no /boot/stateless.img-$release: $logfile"
}

cmd_boot() {
    local image="" shim="" out="" hostname=lab3-12 append="" pxe=0 until="" follow=0 timeout=240
    local net=user ip=dhcp clean_shutdown=0 stock=0 nic=virtio-net-pci nfs=3 dhcp=1 initrd_given="" kernel_args=""
    local variant=default keep=0 # the lab builds one kernel variant
    local check_init=0 hostile_dhcp="" answer_breaks=0 faults=() fault disks=0 pxe_config="" package=""
    local root_path="" export="" dead_nic=0 server_v3_only=0 image_root="" image_order="" pcap="" verity=0 nbd=0
    local second_server=0
    while [[ $# -gt 0 ]]; do
        case $1 in
            --image) image=${2:?}; shift 2 ;;
            --shim) shim=${2:?}; shift 2 ;;
            --out) out=${2:?}; shift 2 ;;
            --hostname) hostname=${2:?}; shift 2 ;;
            --no-hostname) hostname=""; shift ;;
            --append) append+=" ${2?}"; shift 2 ;;
            --pxe) pxe=1; shift ;;
            --pxe-config) pxe_config=${2:?}; shift 2 ;;
            --net) net=${2:?}; shift 2 ;;
            --ip) ip=${2:?}; shift 2 ;;
            --clean-shutdown) clean_shutdown=1; shift ;;
            --stock) stock=1; shift ;;
            --nic) nic=${2:?}; shift 2 ;;
            --nfs) nfs=${2:?}; shift 2 ;;
            --no-dhcp) dhcp=0; shift ;;
            --initrd) initrd_given=${2:?}; shift 2 ;;
            --kernel-args) kernel_args=${2:?}; shift 2 ;;
            --until) until=${2:?}; shift 2 ;;
            --follow) follow=1; shift ;;
            --timeout) timeout=${2:?}; shift 2 ;;
            --keep) keep=1; shift ;;
            --check-init) check_init=1; shift ;;
            --hostile-dhcp) hostile_dhcp=${2:?}; shift 2 ;;
            --fault) faults+=("${2:?}"); shift 2 ;;
            --answer-breaks) answer_breaks=1; shift ;;
            --disks) disks=1; shift ;;
            --package) package=${2:?}; shift 2 ;;
            --root-path) root_path=${2:?}; shift 2 ;;
            --export) export=${2:?}; shift 2 ;;
            --dead-nic) dead_nic=1; shift ;;
            --server-v3-only) server_v3_only=1; shift ;;
            --image-root) image_root=${2:?}; shift 2 ;;
            --image-order) image_order=$(readlink -f "${2:?}"); shift 2 ;;
            --verity) verity=1; shift ;;
            --signed) verity=signed; shift ;;
            --nbd) nbd=1; shift ;;
            --second-server) second_server=1; shift ;;
            --pcap) pcap=${2:?}; shift 2 ;;
            *) boot_usage_error "unknown boot option: $1" ;;
        esac
    done
    [[ -n $image ]] || boot_usage_error "--image is required"
    [[ " ${IMAGE_NAMES[*]} " == *" $image "* ]] || boot_usage_error "unknown image '$image' (known: ${IMAGE_NAMES[*]})"
    [[ -n $shim ]] || boot_usage_error "--shim is required"
    [[ -f $shim && -x $shim ]] || die "--shim $shim is not an executable file"
    [[ -n $out ]] || boot_usage_error "--out is required"
    [[ $timeout =~ ^[0-9]+$ ]] || die "--timeout must be whole seconds"
    [[ $hostname =~ ^[A-Za-z0-9.-]*$ ]] || die "--hostname must be letters, digits, '.' and '-'"
    [[ $net == user || $net == tap ]] || boot_usage_error "--net is user or tap"
    [[ $net == user || $pxe == 0 ]] || boot_usage_error "--pxe goes with --net user only"
    [[ -z $pxe_config || $pxe == 1 ]] || boot_usage_error "--pxe-config goes with --pxe"
    [[ -z $pxe_config || -f $pxe_config ]] || die "--pxe-config $pxe_config: no such file"
    [[ $net == tap || $dhcp == 1 ]] || boot_usage_error "--no-dhcp goes with --net tap only"
    [[ $ip =~ ^[A-Za-z0-9.:]*$ ]] || die "--ip must be an ip= value (letters, digits, '.', ':')"
    [[ $nic == virtio-net-pci || $nic == e1000 ]] || boot_usage_error "--nic is virtio-net-pci or e1000"
    [[ $nfs == 3 || $nfs == 4.1 || $nfs == 4.2 ]] || boot_usage_error "--nfs is 3, 4.1 or 4.2"
    [[ $second_server == 0 || ($stock == 1 && $nfs != 3 && $net == user && -z $kernel_args && $nbd == 0) ]] ||
        boot_usage_error "--second-server goes with --stock and --nfs 4.1 or 4.2 (one port), --net user, no --kernel-args or --nbd"
    [[ " ${faults[*]} " != *" copy-server-gone "* || $second_server == 1 ]] ||
        boot_usage_error "--fault copy-server-gone goes with --second-server"
    [[ $stock == 1 || $nfs == 3 ]] || boot_usage_error "--nfs 4.2 goes with --stock (the kernel's own nfsroot: v3)"
    [[ $stock == 1 || -z $initrd_given$kernel_args ]] || boot_usage_error "--initrd and --kernel-args go with --stock"
    [[ -z $initrd_given || -f $initrd_given ]] || die "--initrd $initrd_given: no such file"
    [[ -z $hostile_dhcp || ($net == tap && $dhcp == 1) ]] || boot_usage_error "--hostile-dhcp goes with --net tap (and DHCP)"
    [[ -z $hostile_dhcp || $hostile_dhcp =~ ^names-[123]$ ]] || boot_usage_error "--hostile-dhcp is names-1, names-2 or names-3"
    [[ $disks == 0 || ($stock == 1 && $check_init == 1) ]] || boot_usage_error "--disks goes with --stock --check-init (the lab kernel has no ext4 or swap)"
    [[ -z $package || -f $package ]] || die "--package $package: no such file"
    [[ -z $package || -z $initrd_given ]] || boot_usage_error "--package builds the initramfs: not with --initrd"
    [[ -z $root_path || ($net == tap && $dhcp == 1 && -z $hostile_dhcp) ]] || boot_usage_error "--root-path goes with --net tap (and dnsmasq)"
    [[ $root_path =~ ^[A-Za-z0-9.:/%,=_-]*$ ]] || die "--root-path must be letters, digits and . : / % , = _ -"
    [[ -z $export || $export =~ ^/[A-Za-z0-9._-]+$ ]] || die "--export must be /NAME (letters, digits, '.', '_', '-')"
    [[ -z $image_root || $image_root == squashfs || $image_root == erofs ]] || boot_usage_error "--image-root is squashfs or erofs"
    [[ -z $image_order || ($image_root == squashfs && -f $image_order) ]] || boot_usage_error "--image-order FILE goes with --image-root squashfs"
    [[ -z $pcap || -d $(dirname "$pcap") ]] || die "--pcap $pcap: no such directory"
    [[ " ${faults[*]} " != *" corrupt-image "* || -n $image_root ]] || boot_usage_error "--fault corrupt-image goes with --image-root"
    [[ $verity == 0 || -n $image_root ]] || boot_usage_error "--verity and --signed go with --image-root"
    [[ " ${faults[*]} " != *" corrupt-block "* || $verity != 0 ]] || boot_usage_error "--fault corrupt-block goes with --verity or --signed"
    for fault in untrusted-signature no-signature layer-changed; do
        [[ " ${faults[*]} " != *" $fault "* || $verity == signed ]] || boot_usage_error "--fault $fault goes with --signed"
    done
    [[ -z $image_root || ($stock == 1 && -z $package) ]] || boot_usage_error "--image-root goes with --stock (the lab's initramfs)"
    [[ $nbd == 0 || (-n $image_root && -z $kernel_args && $net == user) ]] ||
        boot_usage_error "--nbd goes with --image-root (--net user; no --kernel-args)"
    for fault in "${faults[@]}"; do
        fault_known "$fault" || boot_usage_error "unknown fault '$fault' (known: ${FAULT_NAMES[*]})"
    done

    cache_init
    local kernel modules release=""
    if [[ $stock == 1 && $(image_suite "$image") == trixie ]]; then
        release=$(trixie_release)
        kernel=$(trixie_kernel_image)
        modules=$(trixie_kernel_modules)
    elif [[ $stock == 1 ]]; then
        release=$(stock_release)
        kernel=/boot/vmlinuz-$release
        modules=/lib/modules
    else
        kernel=$(kernel_image "$variant")
        modules=$(kernel_modules "$variant")
        [[ -f $kernel ]] || die "kernel ($variant) not built: run qemu/lab build"
    fi
    image_check_built "$image"

    local run_id=stlab-$$ run_dir mode start prep_start
    run_dir=$LAB_CACHE/runs/$run_id
    mode=$([[ $pxe == 1 ]] && echo pxe || echo direct)
    mkdir -p "$out"
    BOOT_OUT=$(cd "$out" && pwd)
    rm -rf "$BOOT_OUT/result" "$BOOT_OUT/serial.log" "$BOOT_OUT/qemu.log" "$BOOT_OUT/res.img" "$BOOT_OUT/summary.txt" \
        "$BOOT_OUT/check.json"
    mkdir -p "$run_dir"
    if [[ $keep == 0 ]]; then on_exit rm -rf "$run_dir"; fi

    prep_start=$(now)
    image_prepare_run "$image" "$shim" "$modules" "$run_dir/root" "$clean_shutdown"
    local initrd="" init=/boot/stateless
    if [[ -n $package ]]; then
        boot_install_package "$run_dir/root" "$image" "$package"
        init=/usr/sbin/stateless
    fi
    if [[ -n $initrd_given ]]; then
        initrd=$initrd_given
    elif [[ $stock == 1 && -n $package ]]; then
        boot_package_initramfs "$run_dir/root" "$release" "$BOOT_OUT/initramfs.txt"
        initrd=$run_dir/root/boot/stateless.img-$release
        log "initramfs for $release: $(stat -c %s "$initrd") bytes (the package's kernel hook)"
    elif [[ $stock == 1 ]]; then
        initrd=$run_dir/initrd.img
        local nics=virtio_net,e1000 extra=()
        [[ " ${faults[*]} " != *" no-nic-driver "* ]] || nics=e1000
        # /lab/check-init has no udev to load the result disk's driver: stateless loads it.
        [[ $check_init == 0 ]] || extra=(--add-module virtio_blk)
        [[ $disks == 0 ]] || extra+=(--add-module ext4)
        # --signed: the initramfs trusts the lab's key (and no other).
        [[ $verity != signed ]] || extra+=(--trust "$(lab_keys)/lab.pub")
        "$shim" initramfs --kernel-version "$release" --modules-dir "$modules/$release" --nic "$nics" "${extra[@]}" -o "$initrd" > "$BOOT_OUT/initramfs.txt" \
            || die "stateless initramfs failed: $BOOT_OUT/initramfs.txt"
        log "initramfs for $release: $(stat -c %s "$initrd") bytes (stateless initramfs --nic $nics)"
    fi
    for fault in "${faults[@]}"; do fault_apply "$run_dir/root" "$fault"; done
    # What an admin runs before serving: the layer tree as exported, checked (read-only).
    "$shim" check "$run_dir/root" --host lab3-12,10.0.2.15/24 --json > "$BOOT_OUT/check.json" 2> "$BOOT_OUT/check.stderr" || true
    # --image-root: the tree as one image file, served with the layer tree beside it (the
    # image leaves /diskless out) and its .sha256; the export holds only those.
    local served=$run_dir/root image_file=""
    if [[ -n $image_root ]]; then
        image_file=$(image_file_ensure "$image" "$run_dir/root" "$image_root" "$shim" "$(image_fingerprint "$run_dir/root" '')" "$image_order" "$verity") ||
            die "no $image_root image of $image"
        served=$run_dir/export
        mkdir -p "$served"
        ln "$image_file" "$served/$image.$image_root"
        ln "$image_file.sha256" "$served/$image.$image_root.sha256"
        [[ $verity == 0 ]] || ln "$image_file.roothash" "$served/$image.$image_root.roothash"
        if [[ $verity == signed ]]; then
            ln "$image_file.verity-params" "$served/$image.$image_root.verity-params"
            [[ " ${faults[*]} " == *" no-signature "* ]] ||
                ln "$image_file.verity-params.sig" "$served/$image.$image_root.verity-params.sig"
        fi
        [[ " ${faults[*]} " != *" untrusted-signature "* ]] ||
            run_logged "stateless image sign --key other.pem --force" "$BOOT_OUT/resign.log" \
                "$shim" image sign "$served/$image.$image_root" --key "$(lab_keys)/other.pem" --force
        # As `stateless image publish` leaves a dir: `current` leads to the image.
        ln -s "$image.$image_root" "$served/current"
        cp -a "$run_dir/root/diskless" "$served/diskless"
        # --signed: the layers too, a manifest and its signature beside each, as an admin signs
        # them; the initramfs's keys make the client apply only what they list.
        if [[ $verity == signed ]]; then
            run_logged "stateless layers sign" "$BOOT_OUT/layers-sign.log" \
                "$shim" layers sign "$served/diskless" --key "$(lab_keys)/lab.pem" || die "stateless layers sign failed"
            [[ " ${faults[*]} " != *" layer-changed "* ]] || fault_layer_changed "$served/diskless"
        fi
        # --nbd: two nbd-servers in the namespace serve the image, read-only (qemu/files/ns-services.sh).
        [[ $nbd == 0 ]] || nbd_config "$run_dir" "$served/$image.$image_root"
        [[ " ${faults[*]} " != *" corrupt-image "* ]] || fault_corrupt_image "$served/$image.$image_root"
        [[ " ${faults[*]} " != *" corrupt-block "* ]] || fault_corrupt_block "$served/$image.$image_root"
    fi
    local fingerprint
    fingerprint=$(image_fingerprint "$served")
    log "prepared $image export with $(basename "$shim") as /boot/stateless in $(elapsed "$prep_start") s"
    truncate -s "$BOOT_RESULT_SIZE" "$BOOT_OUT/res.img"

    export=${export:-/$image}
    [[ $server_v3_only == 0 ]] || export LAB_NFS_PROTOCOLS=3
    servers_start "$run_dir" "$export:$served"
    [[ $second_server == 0 ]] || servers_start_second "$run_dir" "$export:$served"
    local cmdline netdev server=$BOOT_NFS_SERVER
    if [[ $net == tap ]]; then
        tap_network_start "$run_dir" "$BOOT_MAC" "$hostname" "$dhcp" "$hostile_dhcp" "$root_path"
        server=$LAB_TAP_NET.1
        netdev="tap,id=n0,ifname=stlabtap,script=no,downscript=no"
    else
        netdev="user,id=n0,domainname=$BOOT_DOMAIN${hostname:+,hostname=$hostname}"
        # --nbd: the second server, at 127.0.0.1:10810 of the namespace, is 10.0.2.5:10809 for the
        # guest (slirp reaches only the namespace's loopback as 10.0.2.2): socat a connection.
        [[ $nbd == 0 ]] || netdev+=",guestfwd=tcp:$LAB_NBD_SECOND:10809-cmd:socat STDIO TCP:127.0.0.1:10810"
        [[ $nbd == 0 ]] || kernel_args="root=nbd:$server,$LAB_NBD_SECOND:root"
        # --second-server: the second ganesha, in a namespace of its own, is 10.0.2.5:2049.
        [[ $second_server == 0 ]] ||
            netdev+=",guestfwd=tcp:$LAB_SECOND_SERVER:2049-cmd:ip netns exec $SECOND_NS socat STDIO TCP:127.0.0.1:2049"
    fi
    if [[ $stock == 1 ]]; then
        # Initramfs mode: stateless as /init brings the NIC up with its own DHCP and mounts the
        # root itself; no rsize/wsize, so client and server settle on their largest.
        local nfsroot="$server:$export,vers=$nfs,tcp,port=2049"
        [[ $second_server == 0 ]] || nfsroot="$server,$LAB_SECOND_SERVER:$export,vers=$nfs,tcp,port=2049"
        [[ $nfs == 3 ]] && nfsroot+=",mountport=20048,mountproto=tcp"
        cmdline="console=ttyS0 ${kernel_args:-root=/dev/nfs nfsroot=$nfsroot} panic=-1"
        # --kernel-args names the image itself (root=live:nfs://...).
        [[ -z $image_root || -n $kernel_args ]] || cmdline+=" stateless.image=/$image.$image_root"
        # --verity: the root hash on the command line, as systemd names it.
        [[ $verity != 1 ]] || cmdline+=" roothash=$(cat "$image_file.roothash")"
    else
        cmdline="console=ttyS0 ip=$ip root=/dev/nfs nfsroot=$(boot_nfsroot "$server" "$export") ro init=$init panic=-1"
    fi
    # An admin's entry (--pxe-config) names the network and the root itself.
    [[ -z $pxe_config ]] || cmdline="console=ttyS0 panic=-1"
    if [[ -z $until ]]; then cmdline+=" $BOOT_CHECK_ARG"; fi
    if [[ $check_init == 1 ]]; then
        cmdline+=" stateless.init=/lab/check-init"
        [[ $stock == 0 ]] || cmdline+=" stateless.modules=virtio_blk$([[ $disks == 0 ]] || echo ,ext4)"
    fi
    cmdline+=$append
    # +rdrand: the guest kernel trusts the CPU's RNG (RANDOM_TRUST_CPU), so its random pool is
    # ready at once; without it the OpenRC image waited about 35 s for "crng init done".
    # The console goes to serial.log; with --answer-breaks it is QEMU's stdio instead (written
    # to serial.log all the same), so the lab can also type on it through a FIFO on its stdin,
    # held open here (opening it for reading would wait for a writer).
    local serial=(-serial "file:$BOOT_OUT/serial.log") stdin=/dev/null stdout=$BOOT_OUT/qemu.log
    if [[ $answer_breaks == 1 || " ${faults[*]} " == *" server-gone "* ]]; then
        rm -f "$BOOT_OUT/serial.in"
        mkfifo "$BOOT_OUT/serial.in"
        exec {BOOT_SERIAL_IN}<>"$BOOT_OUT/serial.in"
        serial=(-serial stdio)
        stdin=$BOOT_OUT/serial.in
        stdout=$BOOT_OUT/serial.log
    fi
    # The NIC first, in PCI slot 3 whatever disks follow: its predictable name is ens3, as the
    # trixie image's /etc/network/interfaces says. With --dead-nic, slot 3 is another NIC of the
    # same model with carrier on a network of its own (a QEMU hub with nothing else on it: no
    # DHCP, no frame leaves), probed first (eth0), and the boot NIC is in slot 4.
    local slot=0x3
    [[ $dead_nic == 0 ]] || slot=0x4
    # shellcheck disable=SC2054 # commas belong to QEMU's option syntax
    local qemu=(qemu-system-x86_64 -accel tcg -cpu qemu64,+rdrand -m 1024 -nographic -no-reboot
        "${serial[@]}" -monitor none -display none -device "$nic,netdev=n0,mac=$BOOT_MAC,addr=$slot")
    # shellcheck disable=SC2054
    [[ $dead_nic == 0 ]] || qemu+=(-netdev hubport,id=dead,hubid=9 -device "$nic,netdev=dead,mac=$BOOT_DEAD_MAC,addr=0x3")
    # shellcheck disable=SC2054
    qemu+=(-drive "file=$BOOT_OUT/res.img,format=raw,if=none,id=result"
        -device virtio-blk-pci,drive=result,serial=stlab-result)
    # Every frame of the boot NIC both ways, whole (READ data included), as the guest sent and got it.
    # shellcheck disable=SC2054
    [[ -z $pcap ]] || qemu+=(-object "filter-dump,id=pcap,netdev=n0,file=$(readlink -f "$pcap")")
    if [[ $disks == 1 ]]; then
        boot_disks "$run_dir/disks"
        local disk
        for disk in "${BOOT_DISKS[@]}"; do
            # shellcheck disable=SC2054 # commas belong to QEMU's option syntax
            qemu+=(-drive "file=$run_dir/disks/$disk.img,format=raw,if=none,id=$disk"
                -device "virtio-blk-pci,drive=$disk,serial=stlab-$disk")
        done
    fi
    if [[ $pxe == 1 ]]; then
        boot_pxe_tree "$run_dir/tftp" "$kernel" "$cmdline" "$initrd" "$pxe_config"
        qemu+=(-netdev "$netdev,tftp=$run_dir/tftp,bootfile=$(boot_pxe_bootfile "$pxe_config")" -boot n)
    else
        qemu+=(-netdev "$netdev" -kernel "$kernel" -append "$cmdline")
        [[ -z $initrd ]] || qemu+=(-initrd "$initrd")
    fi
    printf '%q ' ip netns exec "$NS_NAME" "${qemu[@]}" > "$BOOT_OUT/qemu-command.txt"
    echo "$cmdline" > "$BOOT_OUT/cmdline.txt"

    log "booting $image ($mode, hostname ${hostname:-none}, timeout $timeout s), serial log: $BOOT_OUT/serial.log"
    start=$(now)
    ip netns exec "$NS_NAME" "${qemu[@]}" < "$stdin" > "$stdout" 2>> "$BOOT_OUT/qemu.log" &
    BOOT_QEMU_PID=$!
    local qemu_rc=0 seconds
    on_exit boot_kill_qemu
    local follow_pid=""
    if [[ $follow == 1 ]]; then
        # The console as it comes; tail ends with QEMU.
        tail --pid="$BOOT_QEMU_PID" -n +1 -F "$BOOT_OUT/serial.log" 2>/dev/null | tr -d '\r' &
        follow_pid=$!
    fi
    BOOT_FAULTS=" ${faults[*]} "
    BOOT_ANSWER_BREAKS=$answer_breaks
    echo "$FAULT_OUTAGE_SECS" > "$run_dir/outage-secs"
    boot_wait "$BOOT_QEMU_PID" "$timeout" "$until"
    wait "$BOOT_QEMU_PID" || qemu_rc=$?
    BOOT_QEMU_PID=""
    seconds=$(elapsed "$start")
    if [[ -n $follow_pid ]]; then wait "$follow_pid" || true; fi

    servers_stop
    servers_stop_second
    tap_network_stop
    mkdir -p "$BOOT_OUT/servers"
    cp "$run_dir"/*.log "$BOOT_OUT/servers/" 2>/dev/null || true
    local leftovers
    leftovers=$(boot_leftovers "$run_dir")
    [[ -z $leftovers ]] || warn "left behind on the host: $leftovers"
    local export_unchanged=no
    [[ $(image_fingerprint "$served") == "$fingerprint" ]] && export_unchanged=yes
    local result=no
    mkdir -p "$BOOT_OUT/result"
    if tar -xf "$BOOT_OUT/res.img" -C "$BOOT_OUT/result" 2>/dev/null && [[ -f $BOOT_OUT/result/facts.txt ]]; then
        result=yes
    fi
    {
        echo "image=$image"; echo "mode=$mode"; echo "hostname_offered=$hostname"
        echo "seconds=$seconds"; echo "qemu_exit=$qemu_rc"; echo "timed_out=$BOOT_TIMED_OUT"
        echo "result=$result"; echo "export_unchanged=$export_unchanged"
        echo "login_after=${BOOT_LOGIN_AFTER:--}"; echo "leftovers=${leftovers:-none}"
        echo "outage=$BOOT_OUTAGE"; echo "server_gone=$BOOT_GONE"; echo "breaks_answered=$BOOT_BREAKS_ANSWERED"
        [[ $disks == 0 ]] || echo "disks_untouched=$(boot_disks_untouched "$run_dir/disks")"
    } > "$BOOT_OUT/summary.txt"

    local panic
    panic=$(tr -d '\r' < "$BOOT_OUT/serial.log" 2>/dev/null | grep -m1 -o 'Kernel panic - .*' || true)
    echo "kernel_panic=${panic:-none}" >> "$BOOT_OUT/summary.txt"
    local how
    how=$([[ $BOOT_TIMED_OUT == 1 ]] && echo "killed after $timeout s" || echo "exited by itself (rc $qemu_rc)")
    if [[ -n $until ]]; then
        if [[ $BOOT_REACHED == 1 && -z $panic ]]; then
            echo "boot ok: image=$image mode=$mode ${seconds}s: the console showed /$until/; see $BOOT_OUT/serial.log"
            return 0
        fi
        echo "boot FAILED: image=$image mode=$mode ${seconds}s qemu $how; ${panic:+$panic; }the console never showed /$until/; see $BOOT_OUT/serial.log"
        return 1
    fi
    if [[ $result == yes ]]; then
        echo "boot ok: image=$image mode=$mode ${seconds}s qemu $how; hostname=$(boot_fact hostname) pid1=$(boot_fact pid1) level=$(boot_fact level) root=\"$(boot_fact root | cut -d' ' -f1,2)\" report=$(boot_fact report) export_unchanged=$export_unchanged -> $BOOT_OUT"
        return 0
    fi
    echo "boot FAILED: image=$image mode=$mode ${seconds}s qemu $how; ${panic:+$panic; }no results on the result disk; see $BOOT_OUT/serial.log"
    return 1
}

cmd_clean() {
    local only_runs=0 ns pid d
    case ${1:-} in
        --runs) only_runs=1 ;;
        "") ;;
        *) usage >&2; exit 2 ;;
    esac
    # Leftovers of boots that were killed hard: namespaces stlab-PID whose lab process is gone.
    for ns in $(ip netns list | awk '{print $1}' | grep -E '^stlab-[0-9]+$' || true); do
        pid=${ns#stlab-}
        if ! pid_alive "$pid"; then
            log "deleting leftover network namespace $ns"
            ip netns del "$ns" || true
        fi
    done
    [[ -d $LAB_CACHE ]] || { log "no cache at $LAB_CACHE"; return 0; }
    [[ -f $LAB_CACHE/$LAB_CACHE_MARKER ]] || die "$LAB_CACHE has no $LAB_CACHE_MARKER: not deleting it"
    if awk '{print $2}' /proc/mounts | grep -q "^$LAB_CACHE/"; then
        die "something is mounted under $LAB_CACHE: $(awk '{print $2}' /proc/mounts | grep "^$LAB_CACHE/" | tr '\n' ' ')"
    fi
    for d in "$LAB_CACHE"/runs/stlab-*; do
        [[ -d $d ]] || continue
        pid=${d##*/stlab-}
        if pid_alive "$pid"; then
            [[ $only_runs == 1 ]] || die "a boot is running (pid $pid, $d): not deleting the cache"
        fi
    done
    if [[ $only_runs == 1 ]]; then
        for d in "$LAB_CACHE"/runs/stlab-*; do
            [[ -d $d ]] || continue
            pid=${d##*/stlab-}
            pid_alive "$pid" && continue
            log "deleting leftover run folder $d"
            rm -rf "$d"
        done
        return 0
    fi
    log "deleting the lab cache $LAB_CACHE ($(du -sh "$LAB_CACHE" | cut -f1))"
    rm -rf --one-file-system "$LAB_CACHE"
}

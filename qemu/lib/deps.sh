# shellcheck shell=bash
# Host packages the lab needs, installed with apt-get when missing.

LAB_PACKAGES=(
    qemu-system-x86 ipxe-qemu pxelinux syslinux-common     # the client machine and its PXE chain
    linux-image-amd64                                      # kept for reference/fallback kernels
    busybox-static                                         # small tools for experiments
    nfs-ganesha nfs-ganesha-vfs rpcbind                    # the NFS server (the host kernel has no nfsd)
    debootstrap cpio kmod zstd                             # client images, initramfs checks
    iproute2 util-linux tar e2fsprogs                      # ip netns, unshare/flock, result and --disks disks
    dosfstools xfsprogs btrfs-progs cryptsetup-bin genisoimage squashfs-tools fdisk   # tests/disks.rs: signatures as the tools write them; tests/image.rs: veritysetup verify
    erofs-utils                                            # tests/image.rs: image build --format erofs (squashfs-tools above)
    dnsmasq-base                                           # DHCP servers in namespaces (tests/dhcp.rs)
    nbd-server socat                                       # --nbd: NBD roots, a second server through slirp's guestfwd
    isc-dhcp-server nfs-kernel-server curl                 # tests/docs.rs: dhcpd, exportfs (parsing only), TFTP
    linux-source-6.1 bc flex bison libelf-dev libssl-dev build-essential   # the client kernel
)

deps_missing() {
    local p
    for p in "${LAB_PACKAGES[@]}"; do
        [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == "install ok installed" ]] || echo "$p"
    done
}

deps_ensure() {
    local missing
    mapfile -t missing < <(deps_missing)
    if [[ ${#missing[@]} -eq 0 ]]; then
        log "host packages: all ${#LAB_PACKAGES[@]} installed"
        return 0
    fi
    log "installing missing host packages: ${missing[*]}"
    mkdir -p "$LAB_CACHE/logs"
    run_logged "apt-get update" "$LAB_CACHE/logs/apt-update.log" apt-get update
    # --no-install-recommends keeps other host services (full dnsmasq) out. isc-dhcp-server and
    # nfs-kernel-server are here for dhcpd and exportfs, which tests/docs.rs runs in namespaces:
    # their services must not run on the host (a DHCP server there could answer a real network;
    # nbd-server, here for --nbd in namespaces, would listen on every address of the host),
    # so no service starts while installing (policy-rc.d, unless the host has its own), and
    # theirs are disabled after.
    local policy=/usr/sbin/policy-rc.d ours=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy" && ours=1
    fi
    run_logged "apt-get install ${missing[*]}" "$LAB_CACHE/logs/apt-install.log" \
        env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" || {
        [[ $ours == 0 ]] || rm -f "$policy"
        die "apt-get install failed: $LAB_CACHE/logs/apt-install.log"
    }
    [[ $ours == 0 ]] || rm -f "$policy"
    if command -v systemctl > /dev/null; then
        systemctl disable --now isc-dhcp-server isc-dhcp-server6 nfs-server nbd-server > /dev/null 2>&1 || true
    fi
    mapfile -t missing < <(deps_missing)
    [[ ${#missing[@]} -eq 0 ]] || die "still missing after apt-get install: ${missing[*]}"
}

# shellcheck shell=bash
# Faults a boot can be given (qemu/lab boot --fault NAME, repeatable), for tests/lab.rs's fault
# matrix. Each changes only the run's own export tree (a hard-link copy of the cached image:
# a file is replaced, never written in place) or the run's servers; none touches the cache.

FAULT_NAMES=(hostile-layers full-layers not-a-root init-not-executable corrupt-modules-dep nfs-outage no-nic-driver server-gone
    corrupt-image corrupt-block untrusted-signature no-signature layer-changed copy-server-gone)
# no-nic-driver (--stock): the initramfs is built for an e1000 NIC only, the client has virtio.
# nfs-outage: the console line that starts it (the last writable dir is made, the layers come
# next), and how long the NFS server stays down.
FAULT_OUTAGE_AT='stateless: writable /var: '
FAULT_OUTAGE_SECS=8
# server-gone (with lab.server-gone=1, which makes /lab/check.sh print this and wait): the NFS
# server killed for good; then root logs in on the console's getty (the lab's images have no
# root password) and types a command.
FAULT_GONE_AT='lab-check: the server may go now'
# copy-server-gone (--second-server, stateless.image.ram): the server the copy into memory reads
# from killed for good at the copy's first progress line; the copy goes on from the other.
FAULT_COPY_GONE_AT='stateless: image into memory: [0-9]+ of [0-9]+ MiB'

fault_known() { [[ " ${FAULT_NAMES[*]} " == *" $1 "* ]]; }

# fault_apply ROOT NAME: applies one on-disk fault to the export ROOT.
fault_apply() {
    local root=$1 name=$2 dir
    case $name in
        hostile-layers) fault_hostile_layers "$root" ;;
        full-layers) fault_full_layers "$root" ;;
        not-a-root) fault_not_a_root "$root" ;;
        init-not-executable)
            printf '#!/bin/sh\nexec /sbin/init "$@"\n' > "$root/lab/not-executable"
            chmod 0644 "$root/lab/not-executable" ;;
        corrupt-modules-dep)
            for dir in "$root"/usr/lib/modules/*/; do fault_corrupt_modules_dep "${dir%/}"; done ;;
        nfs-outage) fault_many_files "$root/diskless/base/etc/stateless-lab/many" 3000 ;;
        # The initramfs, the served image: cmd_boot; the console: boot_faults_on_console.
        no-nic-driver | corrupt-image | corrupt-block | untrusted-signature | no-signature | layer-changed | server-gone | copy-server-gone) ;;
    esac
}

# layer-changed (--signed; cmd_boot, after `stateless layers sign`): the host layer's file is
# changed on the server (replaced: never written in place) and a file no manifest lists is added
# to the base layer. Neither may reach the client's /etc.
fault_layer_changed() {
    local layers=$1 file=$1/hosts/lab3-12/etc/stateless-lab/from-host
    rm "$file"
    echo "changed on the server after signing" > "$file"
    echo "never signed" > "$layers/base/etc/stateless-lab/from-intruder"
}

# The host layer of lab3-12 (the lab's DHCP name) gets what a layer tree must never be able to
# do harm with: symlinks to /etc/shadow and out of the tree, hard links, a FIFO, a device node,
# a 10 GB sparse file, a file outside the writable dirs, and the lab layer is replaced by a
# symlink out of the layer root.
fault_hostile_layers() {
    local root=$1 layer=$1/diskless/hosts/lab3-12
    mkdir -p "$layer/etc/stateless-lab" "$layer/var/lib/stateless-lab" "$layer/usr/bin"
    ln -s /etc/shadow "$layer/etc/stateless-lab/shadow-link"
    ln -s ../../../../../../.. "$layer/etc/stateless-lab/up-link"
    echo "hard" > "$layer/etc/stateless-lab/hard-a"
    ln "$layer/etc/stateless-lab/hard-a" "$layer/etc/stateless-lab/hard-b"
    mkfifo "$layer/etc/stateless-lab/fifo"
    mknod "$layer/etc/stateless-lab/null-device" c 1 3
    truncate -s 10G "$layer/var/lib/stateless-lab/sparse-10g"
    echo "must not land on the root" > "$layer/usr/bin/stateless-lab-evil"
    rm -rf "$root/diskless/labs/lab3"
    ln -s ../../etc "$root/diskless/labs/lab3"
}

# The host layer of lab3-12 brings 6 files of 4 MiB into /var: more than a 16 MiB tmpfs
# (stateless.tmpfs.size=16m) holds beside what /var needs.
fault_full_layers() {
    local dir=$1/diskless/hosts/lab3-12/var/lib/stateless-lab i
    mkdir -p "$dir"
    for i in 1 2 3 4 5 6; do
        head -c 4194304 /dev/zero | tr '\0' "$i" > "$dir/big-$i"
    done
}

# The export holds what an exported data dir would, and /boot/stateless (the kernel's init=
# must exist for on-root mode to get to stateless at all): no init, no shell, no /etc.
fault_not_a_root() {
    local root=$1 keep
    keep=$(mktemp -d "${root%/*}/keep.XXXXXX")
    mv "$root/boot/stateless" "$keep/"
    find "$root" -mindepth 1 -maxdepth 1 -exec rm -rf {} +
    mkdir -p "$root/boot" "$root/data" "$root/dev"
    mv "$keep/stateless" "$root/boot/"
    rmdir "$keep"
    echo "some data" > "$root/data/README"
}

# modules.dep with garbage, a line with no colon, paths out of the tree, a cycle, and overlay's
# entry pointing at a FIFO.
fault_corrupt_modules_dep() {
    local dir=$1 dep
    dep=$(mktemp "$dir/modules.dep.XXXXXX")
    {
        printf '\377\376 not UTF-8 \200\001\n'
        printf 'no colon on this line\n'
        printf '../../../etc/shadow: kernel/fs/overlayfs/overlay.ko\n'
        printf 'kernel/a.ko: kernel/b.ko\nkernel/b.ko: kernel/a.ko\n'
        printf 'kernel/fs/overlayfs/overlay.ko: /etc/shadow ../../../../etc/passwd\n'
        printf 'kernel/fs/overlayfs/overlay.ko:\n'
    } > "$dep"
    rm -f "$dir/modules.dep" "$dir/modules.dep.bin"
    mv "$dep" "$dir/modules.dep"
    chmod 0644 "$dir/modules.dep"
    rm -rf "$dir/kernel/fs/overlayfs"
    mkdir -p "$dir/kernel/fs/overlayfs"
    mkfifo "$dir/kernel/fs/overlayfs/overlay.ko"
}

# fault_many_files DIR N: N small files in DIR, so copying the layer takes seconds under TCG.
fault_many_files() {
    local dir=$1 n=$2 i
    mkdir -p "$dir"
    for ((i = 0; i < n; i++)); do printf '%s\n' "$i" > "$dir/f$i"; done
}

# untrusted-signature (--signed): the served image's statement signed again with keys/other.pem,
# which the initramfs does not trust (`stateless image sign --force`: new files renamed over the
# links, the cache's untouched); no-signature (--signed): no .verity-params.sig served.

# fault_corrupt_block FILE: the served image (--image-root --verity) made a copy of its own
# with one byte changed, byte 4196 (in its second 4 KiB block, data block 1): after the
# superblock, in what was laid out first (--image-order names the init first); its .roothash
# and .sha256 stay the good image's.
fault_corrupt_block() {
    local file=$1 byte
    cp "$file" "$file.corrupt"
    byte=$(od -An -tu1 -j 4196 -N 1 "$file" | tr -d ' ')
    printf "\\$(printf '%03o' $(( (byte + 1) % 256 )))" | dd of="$file.corrupt" bs=1 seek=4196 conv=notrunc status=none
    mv "$file.corrupt" "$file"
}

# fault_corrupt_image FILE: the served image (--image-root) made a copy of its own (the cache's
# file is a hard link: never written) whose superblock has 64 bytes of 0xff after the magic
# (squashfs's at 0, EROFS's at 1024): its magic still says what it is, its mount fails. Its
# .sha256 stays the good image's.
fault_corrupt_image() {
    local file=$1 at=4
    [[ $(head -c 4 "$file") == hsqs ]] || at=1028
    cp "$file" "$file.corrupt"
    head -c 64 /dev/zero | tr '\0' '\377' | dd of="$file.corrupt" bs=1 seek="$at" conv=notrunc status=none
    mv "$file.corrupt" "$file"
}

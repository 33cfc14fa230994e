# shellcheck shell=bash
# Client images (root filesystems exported read-only over NFS).
#
# Built once into the cache, in stages, each with its own stamp. Debian 12 (bookworm):
#   images/base     debootstrap --variant=minbase bookworm + udev, empty root password,
#                   no host-specific files (hostname, resolv.conf, machine-id)
#   images/systemd  base + systemd-sysv
#   images/openrc   base + sysvinit-core + openrc, getty on ttyS0, /etc/rc.local hook
# Debian 13 (trixie), from images/trixie-base (debootstrap trixie + udev):
#   images/trixie-systemd  trixie-base + systemd-sysv, and ifupdown + dhcpcd-base as an image
#                   from the Debian installer has them (the boot interface's predictable name)
#   images/trixie-openrc   trixie-base + sysvinit-core + openrc, as images/openrc
#   images/trixie-busybox  trixie-base + busybox, without udev: busybox's own init
#                   (/sbin/init) with an inittab; the devices phase loads the drivers (.ko.xz)
# Per boot (image_prepare_run), a hard-link copy of the image gets the per-run bits:
# /boot/stateless (the binary under test), the /diskless layer tree and /lab (check scripts).
# So a new binary never rebuilds an image.

IMAGE_NAMES=(systemd openrc trixie-systemd trixie-openrc trixie-busybox)

# image_suite NAME: the Debian release an image is built from.
image_suite() { if [[ $1 == trixie-* ]]; then echo trixie; else echo bookworm; fi; }
# image_base NAME: the stage an image starts from.
image_base() { if [[ $1 == trixie-* ]]; then echo trixie-base; else echo base; fi; }
# image_kind NAME: its init system (systemd, openrc, busybox): its builder and per-run hook.
image_kind() { echo "${1#trixie-}"; }

image_root() { echo "$LAB_CACHE/images/$1/rootfs"; }

# The Debian mirror this machine's apt uses (never a hard-coded host): the one its bookworm
# source names; the trixie images and kernel come from the same mirror's trixie suite.
# STATELESS_LAB_MIRROR overrides it.
apt_mirror() {
    local uri
    if [[ -n ${STATELESS_LAB_MIRROR:-} ]]; then echo "$STATELESS_LAB_MIRROR"; return; fi
    # deb822 files: the first stanza of type deb whose Suites has exactly "bookworm".
    uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk -v suite=bookworm '
        function flush() { if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && uris != "" && !found) { split(uris, u, " "); print u[1]; found = 1 } types = suites = uris = "" }
        /^[ \t]*$/ { flush(); next }
        /^[ \t]*#/ { next }
        tolower($1) == "types:"  { $1 = ""; types = $0 }
        tolower($1) == "suites:" { $1 = ""; suites = $0 }
        tolower($1) == "uris:"   { $1 = ""; uris = $0 }
        END { flush() }' | sed 's/^ *//')
    if [[ -z $uri && -f /etc/apt/sources.list ]]; then
        uri=$(awk -v suite=bookworm '$1 == "deb" {
                i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                if ($(i + 1) == suite) { print $i; exit } }' /etc/apt/sources.list)
    fi
    [[ -n $uri ]] || die "no 'bookworm' deb source in /etc/apt/sources.list{,.d/*.sources}; set STATELESS_LAB_MIRROR"
    echo "${uri%/}"
}

# apt's HTTP proxy as environment words (none if this machine's apt has no proxy):
# debootstrap and the chroot's apt only see http_proxy.
apt_proxy_env() {
    local proxy=""
    eval "$(apt-config shell proxy Acquire::http::Proxy)"
    APT_PROXY_ENV=()
    if [[ -n $proxy ]]; then APT_PROXY_ENV=("http_proxy=$proxy"); fi
}

# chroot_run ROOT COMMAND...: runs COMMAND in ROOT with /proc mounted, non-interactive apt.
chroot_run() {
    local root=$1 rc=0; shift
    apt_proxy_env
    mount -t proc proc "$root/proc"
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C DEBIAN_FRONTEND=noninteractive \
        "${APT_PROXY_ENV[@]}" chroot "$root" "$@" || rc=$?
    umount "$root/proc" || umount -l "$root/proc"
    return "$rc"
}

# chroot_apt_install ROOT LOG PACKAGE...: installs packages without starting any service.
chroot_apt_install() {
    local root=$1 logfile=$2; shift 2
    printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"
    chmod 755 "$root/usr/sbin/policy-rc.d"
    # Name resolution for apt while building (image_scrub empties it again).
    cp -L /etc/resolv.conf "$root/etc/resolv.conf"
    run_logged "apt-get install $* (in $root)" "$logfile" \
        chroot_run "$root" sh -c 'apt-get update -q && apt-get install -y -q --no-install-recommends "$@" && apt-get clean' sh "$@"
    rm -f "$root/usr/sbin/policy-rc.d"
}

# Removes what ties a tree to the build host or to one machine.
image_scrub() {
    local root=$1
    rm -f "$root/etc/hostname" "$root/var/lib/dbus/machine-id"
    : > "$root/etc/resolv.conf"
    # Empty machine-id: systemd makes a transient one at each boot of the shared image.
    : > "$root/etc/machine-id"
    rm -rf "$root/var/lib/apt/lists/"* "$root/var/cache/apt/"*.bin
}

# image_build_base DEST MIRROR SUITE
image_build_base() {
    local dest=$1 mirror=$2 suite=$3
    apt_proxy_env
    run_logged "debootstrap --variant=minbase $suite from $mirror (about 1 min)" "${dest%/*}/debootstrap.log" \
        env "${APT_PROXY_ENV[@]}" nice -n 19 debootstrap --variant=minbase "$suite" "$dest" "$mirror"
    # udev: without it systemd waits 90 s for dev-ttyS0.device and no serial getty starts.
    chroot_apt_install "$dest" "${dest%/*}/apt.log" udev
    chroot_run "$dest" passwd -d root > /dev/null
    image_scrub "$dest"
}

image_build_systemd() {
    local dest=$1
    chroot_apt_install "$dest" "${dest%/*}/apt.log" systemd-sysv
    image_scrub "$dest"
}

image_build_busybox() {
    local dest=$1 tool
    chroot_apt_install "$dest" "${dest%/*}/apt.log" busybox
    # No udev: busybox's init would not start it, so stateless's devices phase loads the
    # drivers (it leaves them to an image's udev).
    run_logged "dpkg --purge udev (in $dest)" "${dest%/*}/apt.log" chroot_run "$dest" dpkg --purge udev
    chroot_run "$dest" /bin/busybox --list | grep -qx init || die "this busybox has no init applet"
    # busybox's init as /sbin/init, and the tools the lab's hook and an admin call by name.
    for tool in init poweroff reboot halt; do ln -sfn /bin/busybox "$dest/sbin/$tool"; done
    # Its inittab (busybox's format, not sysvinit's): the lab's hook at sysinit (the check runs
    # there and powers off), a login prompt on the serial console, a clean shutdown.
    cat > "$dest/etc/inittab" <<'EOF'
# stateless QEMU lab: busybox init
::sysinit:/bin/sh -c '[ -x /lab/rc.local ] && /lab/rc.local; exit 0'
ttyS0::respawn:/bin/busybox getty -L 115200 ttyS0 vt100
::ctrlaltdel:/bin/busybox reboot
::shutdown:/bin/busybox umount -a -r
EOF
    image_scrub "$dest"
}

# The trixie image as the Debian installer leaves a server without a desktop: systemd, and
# ifupdown with a DHCP client for the predictable name of the first NIC (ens3 on the lab's
# QEMU machine), which systemd-udevd gives the boot interface once systemd runs.
image_build_systemd_trixie() {
    local dest=$1
    # zstd: the stateless package's Recommends (its initramfs builder runs it).
    chroot_apt_install "$dest" "${dest%/*}/apt.log" systemd-sysv ifupdown dhcpcd-base zstd
    mkdir -p "$dest/etc/network"
    cat > "$dest/etc/network/interfaces" <<'EOF'
# As the Debian installer writes it for a machine whose NIC is ens3.
source /etc/network/interfaces.d/*

auto lo
iface lo inet loopback

allow-hotplug ens3
iface ens3 inet dhcp
EOF
    image_scrub "$dest"
}

image_build_openrc() {
    local dest=$1
    chroot_apt_install "$dest" "${dest%/*}/apt.log" sysvinit-core openrc
    # A login prompt on the serial console.
    sed -i 's|^#\?T0:23:respawn:/sbin/getty -L ttyS0 9600 vt100|T0:2345:respawn:/sbin/getty -L ttyS0 115200 vt100|' \
        "$dest/etc/inittab"
    grep -q '^T0:2345:respawn:/sbin/getty -L ttyS0' "$dest/etc/inittab" || die "could not enable the ttyS0 getty in inittab"
    # OpenRC's per-service config dir, as on Gentoo (Debian's package does not create it):
    # stateless writes /etc/conf.d/hostname when it exists.
    mkdir -p "$dest/etc/conf.d"
    # The old setup booted with softlevel=unionfs: a runlevel of that name, stacked on default.
    mkdir -p "$dest/etc/runlevels/unionfs"
    ln -sfn ../default "$dest/etc/runlevels/unionfs/default"
    # The lab's check hook: /lab/rc.local is installed per boot (see image_prepare_run).
    cat > "$dest/etc/rc.local" <<'EOF'
#!/bin/sh
# stateless QEMU lab: run the per-boot hook if the lab installed one.
[ -x /lab/rc.local ] && /lab/rc.local
exit 0
EOF
    chmod 755 "$dest/etc/rc.local"
    image_scrub "$dest"
}

# image_base_hash SUITE
image_base_hash() {
    inputs_hash "$(declare -f image_build_base chroot_run chroot_apt_install image_scrub)" \
        "suite=$1" "mirror=$(apt_mirror)" "debootstrap=$(pkg_version debootstrap)"
}

# image_builder NAME: the function that builds the image from its base (a release's own
# builder, image_build_<kind>_<suite>, where there is one).
image_builder() {
    local kind suite
    kind=$(image_kind "$1")
    suite=$(image_suite "$1")
    if declare -F "image_build_${kind}_$suite" > /dev/null; then
        echo "image_build_${kind}_$suite"
    else
        echo "image_build_$kind"
    fi
}

image_hash() {
    local name=$1
    inputs_hash "$(image_base_hash "$(image_suite "$name")")" \
        "$(declare -f "$(image_builder "$name")" chroot_apt_install image_scrub)"
}

# stage_build NAME HASH BUILDER [FROM]: (re)builds images/NAME/rootfs with BUILDER, starting
# from a copy of images/FROM/rootfs (or from nothing), unless its stamp matches HASH.
stage_build() {
    local name=$1 hash=$2 builder=$3 from=${4:-} dir tmp start
    dir=$LAB_CACHE/images/$name
    if stamp_ok "image-$name" "$hash" && [[ -d $dir/rootfs ]]; then
        log "image stage '$name' is up to date: $dir/rootfs"
        return 0
    fi
    start=$(now)
    # shellcheck disable=SC2016 # the single quotes are part of the message
    log "building image stage '$name'${from:+ from '$from'}"
    mkdir -p "$dir"
    tmp=$dir/rootfs.tmp
    rm -rf "$tmp"
    if [[ -n $from ]]; then
        cp -a "$(image_root "$from")" "$tmp"
    fi
    "$builder" "$tmp" "${@:5}"
    stamp_clear "image-$name"
    rm -rf "$dir/rootfs"
    mv "$tmp" "$dir/rootfs"
    stamp_write "image-$name" "$hash"
    log "image stage '$name' ready in $(elapsed "$start") s: $dir/rootfs ($(du -sh "$dir/rootfs" | cut -f1))"
}

# Unmounts /proc mounts that an interrupted chroot_run left under the image folders.
images_umount_leftovers() {
    local m
    awk '{print $2}' /proc/mounts | grep "^$LAB_CACHE/images/" | sort -r | while read -r m; do
        umount -l "$m" || true
    done
}

# image_ensure NAME: builds the base and the image unless they are up to date.
image_ensure() {
    local name=$1 base suite
    [[ " ${IMAGE_NAMES[*]} " == *" $name "* ]] || die "unknown image '$name' (known: ${IMAGE_NAMES[*]})"
    base=$(image_base "$name")
    suite=$(image_suite "$name")
    on_exit images_umount_leftovers
    cache_lock "image-$base"
    stage_build "$base" "$(image_base_hash "$suite")" image_build_base "" "$(apt_mirror)" "$suite"
    cache_lock "image-$name"
    stage_build "$name" "$(image_hash "$name")" "$(image_builder "$name")" "$base"
}

# image_check_built NAME: dies if the image was never built, warns if its inputs changed.
image_check_built() {
    local name=$1
    [[ -d $(image_root "$name") ]] || die "image '$name' is not built: run qemu/lab build"
    stamp_ok "image-$name" "$(image_hash "$name")" ||
        warn "image '$name' is older than its inputs: run qemu/lab build to refresh it"
}

# image_prepare_run NAME SHIM MODULES DEST CLEAN: makes DEST a hard-link copy of the image plus the
# per-run bits: the shim as /boot/stateless, the layer tree, the check, and the kernel's modules
# (MODULES is a lib/modules folder). CLEAN=1: systemd powers off cleanly after the check
# (stopping every unit) instead of forcing it. Files from the cache are never written through the links:
# per-run files are new inodes.
image_prepare_run() {
    local name=$1 shim=$2 modules=$3 dest=$4 clean=${5:-0}
    rm -rf "$dest"
    cp -al "$(image_root "$name")" "$dest"
    rm -rf "$dest/diskless" "$dest/lab" "$dest/boot/stateless"
    cp -r --no-preserve=ownership "$LAB_FILES/diskless" "$dest/diskless"
    mkdir -p "$dest/lab" "$dest/usr/lib/modules"
    # Hard links where they can be (the stock kernel's tree is 400 MB); never written through.
    cp -al "$modules"/. "$dest/usr/lib/modules/" 2>/dev/null || cp -r "$modules"/. "$dest/usr/lib/modules/"
    install -m 0755 "$LAB_FILES/check.sh" "$dest/lab/check.sh"
    install -m 0755 "$LAB_FILES/check-init" "$dest/lab/check-init"
    case $(image_kind "$name") in
        # The same hook for both: run by /etc/rc.local (OpenRC) or busybox's sysinit.
        openrc | busybox) install -m 0755 "$LAB_FILES/openrc-rc.local" "$dest/lab/rc.local" ;;
        systemd)
            mkdir -p "$dest/etc/systemd/system/multi-user.target.wants"
            local unit
            for unit in lab-check.service lab-demo.service; do
                install -m 0644 "$LAB_FILES/$unit" "$dest/etc/systemd/system/$unit"
                ln -s "../$unit" "$dest/etc/systemd/system/multi-user.target.wants/$unit"
            done
            if [[ $clean == 1 ]]; then
                sed -i 's/^\(SuccessAction\|FailureAction\)=poweroff-force$/\1=poweroff/' \
                    "$dest/etc/systemd/system/lab-check.service"
            fi
            ;;
    esac
    install -m 0755 "$shim" "$dest/boot/stateless"
}

# image_fingerprint ROOT [TIMES]: one hash over every entry's type, mode, owner, size, mtime and link
# target, and the content of every regular file under 1 GiB (`-size -1G` would mean empty: find
# rounds up to whole units; a larger one, such as a fault's
# 10 GB sparse file, by its metadata: a write changes its mtime): what a client writing to its
# root would change. TIMES '': without the times (what a tree holds, however freshly copied).
image_fingerprint() {
    local root=$1 times=${2-' %T@'}
    {
        find "$root" -xdev -printf "%P %y %m %U %G %s$times %l\\n" | LC_ALL=C sort
        (cd "$root" && find . -xdev -type f -size -1073741824c -print0 | LC_ALL=C sort -z | xargs -0r sha256sum)
    } | sha256sum | cut -d' ' -f1
}

# lab_keys: the lab's ed25519 signing keys in the cache, made once with openssl as an admin
# makes them (docs/serving.md): keys/lab.pem (its public half keys/lab.pub), which the lab's
# initramfs trusts with --signed, and keys/other.pem, which it does not. Prints the dir.
lab_keys() {
    local dir=$LAB_CACHE/keys name
    mkdir -p "$dir"
    cache_lock keys
    for name in lab other; do
        [[ -s $dir/$name.pem && -s $dir/$name.pub ]] && continue
        openssl genpkey -algorithm ed25519 -out "$dir/.$name.pem" 2>/dev/null || die "openssl genpkey failed"
        openssl pkey -in "$dir/.$name.pem" -pubout -out "$dir/$name.pub" 2>/dev/null || die "openssl pkey failed"
        mv "$dir/.$name.pem" "$dir/$name.pem"
    done
    echo "$dir"
}

# image_file_ensure NAME ROOT FORMAT SHIM KEY [ORDER] [VERITY]: ROOT (the per-run tree of the image
# NAME, binary under test, check and modules in it) as one image file (--image-root), `stateless
# image build` with Debian's mksquashfs (zstd) or mkfs.erofs (lz4); with ORDER, a file list, laid
# out in its order (--order); with VERITY 1, a dm-verity tree appended (--verity) and its
# .roothash beside it; with VERITY signed, also signed with the lab's key (--sign keys/lab.pem:
# .verity-params and .verity-params.sig beside it). Cached in image-files/ under KEY (the tree's content: a new binary or
# check makes a new image) and ORDER's hash, the older ones of NAME, FORMAT, ordered or not and
# verity or not deleted. Prints its path.
image_file_ensure() {
    local name=$1 root=$2 format=$3 shim=$4 key=$5 order=${6:-} verity=${7:-0} dir file tmp start compress=zstd stem ordering=()
    dir=$LAB_CACHE/image-files
    stem=$name-$format
    if [[ $verity == 1 ]]; then
        stem=$name-verity-$format
        ordering+=(--verity)
    elif [[ $verity == signed ]]; then
        stem=$name-signed-$format
        ordering+=(--verity --sign "$(lab_keys)/lab.pem")
        key=$(printf '%s %s' "$key" "$(sha256sum < "$LAB_CACHE/keys/lab.pub")" | sha256sum)
    fi
    if [[ -n $order ]]; then
        stem=${stem/-$format/-ordered-$format}
        key=$(printf '%s %s' "$key" "$(sha256sum < "$order")" | sha256sum)
        ordering+=(--order "$order")
    fi
    file=$dir/$stem-${key:0:16}.img
    mkdir -p "$dir"
    cache_lock "image-file-$stem"
    if [[ -f $file ]]; then
        log "image file up to date: $file"
        echo "$file"
        return 0
    fi
    [[ $format == erofs ]] && compress=lz4
    rm -f "$dir/$stem"-*
    tmp=$dir/.$stem-$$.img
    start=$(now)
    run_logged "stateless image build --format $format --compress $compress ${ordering[*]}" "$dir/$stem.log" \
        "$shim" image build "$root" -o "$tmp" --format "$format" --compress "$compress" "${ordering[@]}"
    mv "$tmp.sha256" "$file.sha256"
    [[ $verity == 0 ]] || mv "$tmp.roothash" "$file.roothash"
    if [[ $verity == signed ]]; then
        mv "$tmp.verity-params" "$file.verity-params"
        mv "$tmp.verity-params.sig" "$file.verity-params.sig"
    fi
    mv "$tmp" "$file"
    log "image file ready in $(elapsed "$start") s: $file ($(stat -c %s "$file") bytes)"
    echo "$file"
}

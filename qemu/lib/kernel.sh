# shellcheck shell=bash
# The client kernel: Debian's linux-source-6.1, `make tinyconfig` (everything off) plus a
# fragment from qemu/files/kernel/<variant>.config that turns on what the clients use. The
# kernel itself configures the network (ip=dhcp) and mounts the NFS root (root=/dev/nfs), so
# the client needs no initramfs.
#
# Output: $LAB_CACHE/kernel/<variant>/bzImage, .../config, and .../modules/lib/modules/<release>/
# (modules_install output, with modules.dep), installed into each booted image.
# The source tree is unpacked once into $LAB_CACHE/kernel/src-<version>; each variant builds
# out of tree in $LAB_CACHE/kernel/<variant>/build, so a changed fragment rebuilds incrementally.

KERNEL_SOURCE_PKG=linux-source-6.1
KERNEL_TARBALL=/usr/src/linux-source-6.1.tar.xz

# Options the lab relies on, checked in the final .config (=y, never =m: there is no initramfs).
KERNEL_REQUIRED=(
    IP_PNP IP_PNP_DHCP ROOT_NFS NFS_FS NFS_V3 VIRTIO_PCI VIRTIO_NET VIRTIO_BLK E1000
    DEVTMPFS DEVTMPFS_MOUNT TMPFS SERIAL_8250_CONSOLE BINFMT_SCRIPT
)

kernel_dir() { echo "$LAB_CACHE/kernel/$1"; }

# The stock Debian kernel (linux-image-amd64 on this host), for initramfs mode: its release,
# newest first. Its image is /boot/vmlinuz-<release>, its modules /lib/modules/<release>.
stock_release() {
    local release
    release=$(find /boot -maxdepth 1 -name 'vmlinuz-*-amd64' -printf '%f\n' | sed 's/^vmlinuz-//' | sort -V | tail -n 1)
    [[ -n $release && -d /lib/modules/$release ]] || die "no stock kernel in /boot with modules in /lib/modules (linux-image-amd64)"
    echo "$release"
}
kernel_image() { echo "$(kernel_dir "$1")/bzImage"; }
kernel_modules() { echo "$(kernel_dir "$1")/modules/lib/modules"; }

kernel_fragment() {
    local f=$LAB_FILES/kernel/$1.config
    [[ -f $f ]] || die "no kernel config fragment for variant '$1': $f"
    echo "$f"
}

kernel_inputs_hash() {
    local variant=$1
    inputs_hash "$(declare -f kernel_build kernel_unpack kernel_check_config)" \
        "${KERNEL_REQUIRED[*]}" "$(cat "$(kernel_fragment "$variant")")" \
        "$KERNEL_SOURCE_PKG=$(pkg_version "$KERNEL_SOURCE_PKG")" "gcc=$(pkg_version gcc-12)"
}

# kernel_ensure VARIANT: builds the kernel unless its stamp matches the inputs.
kernel_ensure() {
    local variant=${1:-default} hash
    cache_lock "kernel-$variant"
    hash=$(kernel_inputs_hash "$variant")
    if stamp_ok "kernel-$variant" "$hash" && [[ -f $(kernel_image "$variant") && -d $(kernel_modules "$variant") ]]; then
        log "kernel ($variant) is up to date: $(kernel_image "$variant")"
        return 0
    fi
    kernel_build "$variant"
    stamp_write "kernel-$variant" "$hash"
}

# Unpacks the source tarball once per source version; prints the source directory.
kernel_unpack() {
    local version src
    version=$(pkg_version "$KERNEL_SOURCE_PKG")
    src=$LAB_CACHE/kernel/src-$version
    [[ -f $KERNEL_TARBALL ]] || die "$KERNEL_TARBALL missing (package $KERNEL_SOURCE_PKG)"
    if [[ ! -f $src/.unpacked ]]; then
        rm -rf "$src" "$src.tmp"
        mkdir -p "$src.tmp"
        run_logged "unpacking $KERNEL_TARBALL" "$LAB_CACHE/kernel/unpack.log" \
            nice -n 19 tar -xJf "$KERNEL_TARBALL" -C "$src.tmp" --strip-components=1 >&2
        mv "$src.tmp" "$src"
        touch "$src/.unpacked"
    fi
    echo "$src"
}

# Every KERNEL_REQUIRED option =y, every CONFIG_ line of the fragment as written, and every
# "# CONFIG_X is not set" line of it neither y nor m (Kconfig drops a value whose dependencies
# are off, or turns an option back on that another one selects, without an error).
kernel_check_config() {
    local config=$1 fragment=$2 opt line missing=()
    for opt in "${KERNEL_REQUIRED[@]}"; do
        grep -qx "CONFIG_$opt=y" "$config" || missing+=("CONFIG_$opt")
    done
    while read -r line; do
        if [[ $line == CONFIG_* ]]; then
            grep -qx "$line" "$config" || missing+=("$line (from fragment)")
        elif [[ $line =~ ^"# "(CONFIG_[A-Za-z0-9_]+)" is not set"$ ]]; then
            opt=${BASH_REMATCH[1]}
            ! grep -q "^$opt=" "$config" || missing+=("$line (from fragment, but $(grep "^$opt=" "$config"))")
        fi
    done < "$fragment"
    [[ ${#missing[@]} -eq 0 ]] || die "kernel config lacks: ${missing[*]}"
}

kernel_build() {
    local variant=$1 src dir fragment start
    start=$(now)
    src=$(kernel_unpack)
    dir=$(kernel_dir "$variant")
    fragment=$(kernel_fragment "$variant")
    mkdir -p "$dir/build"
    log "configuring kernel ($variant): tinyconfig + $fragment"
    nice -n 19 make -s -C "$src" O="$dir/build" tinyconfig > "$dir/config.log" 2>&1
    (cd "$dir/build" && nice -n 19 "$src/scripts/kconfig/merge_config.sh" -m .config "$fragment") >> "$dir/config.log" 2>&1
    nice -n 19 make -s -C "$src" O="$dir/build" olddefconfig >> "$dir/config.log" 2>&1
    kernel_check_config "$dir/build/.config" "$fragment"
    run_logged "building kernel ($variant) with make -j$(nproc) bzImage modules, takes about 5 min" "$dir/make.log" \
        nice -n 19 make -C "$src" O="$dir/build" -j"$(nproc)" bzImage modules
    rm -rf "$dir/modules.tmp" "$dir/modules"
    run_logged "installing modules" "$dir/modules.log" \
        make -C "$src" O="$dir/build" INSTALL_MOD_PATH="$dir/modules.tmp" INSTALL_MOD_STRIP=1 modules_install
    # Only what the images need: the .ko files and the module index (no build/source links).
    find "$dir/modules.tmp" -maxdepth 4 \( -name build -o -name source \) -type l -delete
    mv "$dir/modules.tmp" "$dir/modules"
    cp "$dir/build/arch/x86/boot/bzImage" "$dir/bzImage.tmp"
    mv "$dir/bzImage.tmp" "$dir/bzImage"
    cp "$dir/build/.config" "$dir/config"
    log "kernel ($variant) ready: $dir/bzImage ($(du -h "$dir/bzImage" | cut -f1)) after $(elapsed "$start") s"
}

# Debian 13's stock kernel (linux-image-amd64 of trixie), fetched from the trixie suite of the
# mirror this machine's apt uses, with a private apt state in the cache (the host's apt sources
# and lists are never touched). Unpacked into $LAB_CACHE/kernel/trixie: vmlinuz,
# usr/lib/modules/<release>/ (merged /usr, .ko.xz) with the modules.dep the .deb lacks (depmod).
TRIXIE_DIR_NAME=trixie

trixie_dir() { echo "$LAB_CACHE/kernel/$TRIXIE_DIR_NAME"; }
# The trixie kernel's release (6.12.x+deb13-amd64), read from the unpacked tree.
trixie_release() {
    local release
    release=$(find "$(trixie_dir)/root/usr/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n 1)
    [[ -n $release ]] || die "the trixie kernel is not fetched: run qemu/lab build"
    echo "$release"
}
trixie_kernel_image() { echo "$(trixie_dir)/root/boot/vmlinuz-$(trixie_release)"; }
trixie_kernel_modules() { echo "$(trixie_dir)/root/usr/lib/modules"; }

# trixie_apt ARGS...: apt-get or apt-cache (first word) with the private trixie state.
trixie_apt() {
    local tool=$1 dir
    shift
    dir=$(trixie_dir)/apt
    apt_proxy_env
    env "${APT_PROXY_ENV[@]}" "$tool" -o Dir::Etc::SourceList="$dir/sources.list" -o Dir::Etc::SourceParts=/dev/null \
        -o Dir::State::Lists="$dir/lists" -o Dir::Cache="$dir/cache" -o Dir::State::status=/dev/null \
        -o Debug::NoLocking=1 "$@"
}

# trixie_download DIR PACKAGE: apt-get download into DIR.
trixie_download() { (cd "$1" && trixie_apt apt-get download "$2"); }

trixie_kernel_fetch() {
    local dir mirror pkg deb start
    start=$(now)
    dir=$(trixie_dir)
    mirror=$(apt_mirror)
    rm -rf "$dir"
    mkdir -p "$dir/apt/lists/partial" "$dir/apt/cache/archives/partial" "$dir/deb"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" > "$dir/apt/sources.list"
    run_logged "apt-get update (trixie from $mirror, private state)" "$dir/apt.log" trixie_apt apt-get update
    pkg=$(trixie_apt apt-cache depends linux-image-amd64 | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')
    [[ -n $pkg ]] || die "trixie's linux-image-amd64 names no versioned kernel package (see $dir/apt.log)"
    run_logged "downloading $pkg (about 110 MB)" "$dir/download.log" trixie_download "$dir/deb" "$pkg"
    deb=$(find "$dir/deb" -name "${pkg}_*.deb" | head -n 1)
    [[ -n $deb ]] || die "apt-get download $pkg left no .deb in $dir/deb"
    dpkg-deb -x "$deb" "$dir/root.tmp"
    # The .deb has no module index: depmod makes it (it looks in <base>/lib/modules).
    ln -s usr/lib "$dir/root.tmp/lib"
    depmod -b "$dir/root.tmp" "$(find "$dir/root.tmp/usr/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n' | head -n 1)"
    rm "$dir/root.tmp/lib"
    rm -rf "$dir/deb" "$dir/apt/cache"
    mv "$dir/root.tmp" "$dir/root"
    log "trixie kernel $(trixie_release) ready in $(elapsed "$start") s: $(trixie_kernel_image)"
}

# trixie_kernel_ensure: fetches the trixie kernel unless the cache holds it (a new point release
# of trixie is picked up by `qemu/lab clean` or by deleting the stamp kernel-trixie).
trixie_kernel_ensure() {
    local hash
    cache_lock kernel-trixie
    hash=$(inputs_hash "$(declare -f trixie_kernel_fetch trixie_apt trixie_download)" "mirror=$(apt_mirror)" "kmod=$(pkg_version kmod)")
    if stamp_ok kernel-trixie "$hash" && [[ -d $(trixie_dir)/root ]]; then
        log "trixie kernel is up to date: $(trixie_kernel_image)"
        return 0
    fi
    stamp_clear kernel-trixie
    trixie_kernel_fetch
    stamp_write kernel-trixie "$hash"
}

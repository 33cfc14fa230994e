# shellcheck shell=bash
# benches/lib.sh: what the boot benches (benches/initramfs, benches/image-root) share; sourced
# from the repository's top. Their per-boot figures and RESULTS.md sections: benches/bootfigures.py.
# shellcheck source=qemu/lib/common.sh
source qemu/lib/common.sh
# shellcheck source=qemu/lib/kernel.sh
source qemu/lib/kernel.sh

# bench_prepare NAME 12|13: as root, the lab's images and the release build ready; sets bin (the
# release binary) and, for the Debian release, suite, image (the lab's systemd image of it),
# release (its stock kernel: Debian 12 this machine's, Debian 13 the one qemu/lab fetched) and
# modules (that kernel's modules dir).
bench_prepare() {
    [[ $(id -u) -eq 0 ]] || { echo "benches/$1: needs root (qemu/lab)" >&2; exit 1; }
    qemu/lab build --images-only >/dev/null
    cargo build --release --locked -q
    cache_init
    # shellcheck disable=SC2034 # the sourcing bench's
    bin=$PWD/target/x86_64-unknown-linux-gnu/release/stateless
    # shellcheck disable=SC2034
    if [[ $2 == 13 ]]; then
        suite=trixie image=trixie-systemd release=$(trixie_release)
        modules=$(trixie_kernel_modules)/$release
    else
        suite=bookworm image=systemd release=$(stock_release)
        modules=/lib/modules/$release
    fi
}

# bench_tshark: tshark (Wireshark's dissectors, to count a --pcap's RPCs), installed with apt-get
# when missing; non-root users get no setuid dumpcap (the debconf question answered first).
bench_tshark() {
    command -v tshark > /dev/null && return 0
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends tshark > /dev/null
}

#!/bin/sh
# stateless QEMU lab: the check that runs inside a booted client (installed as /lab/check.sh).
# systemd runs it via lab-check.service (after multi-user.target), OpenRC via /etc/rc.local ->
# /lab/rc.local; both only with lab.check=1 on the kernel command line.
# It judges nothing: it collects facts and /run/stateless/ and writes them as a tar archive
# onto the result disk (the virtio disk with serial "stlab-result"); the host extracts it.
# Few processes on purpose: under TCG every fork+exec costs tens of milliseconds.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
out=/run/lab-result
rm -rf "$out"
mkdir -p "$out"

# line FILE: first line of FILE (empty if unreadable), without a process.
line() { _l=""; read -r _l < "$1" 2>/dev/null; printf '%s' "$_l"; }
fact() { printf '%s=%s\n' "$1" "$2" >> "$out/facts.txt"; }
# `true >`, not `: >`: a failed redirection on a special builtin (`:`) makes dash exit.
writable() { if true 2>/dev/null > "$1/.lab-write-test"; then rm -f "$1/.lab-write-test"; echo yes; else echo no; fi; }

uptime=$(line /proc/uptime)
fact uptime "${uptime%% *}"
# With lab.login=1 (benches/initramfs, which times the login prompt from the console): wait,
# 10 s at most, for a getty on ttyS0, then a moment for its prompt, before the power-off.
case " $(line /proc/cmdline) " in
*" lab.login=1 "*)
    i=0
    while [ $i -lt 50 ] && ! grep -qs ttyS0 /proc/[0-9]*/cmdline; do sleep 0.2; i=$((i + 1)); done
    sleep 0.5 ;;
esac
# With lab.server-gone=1 (qemu/lab --fault server-gone): the NFS server is killed for good once
# this line is on the console; 20 s later a command reads its programs from the image afresh
# (the page cache dropped), and the host logs in as root on the console's getty and types a
# command that leaves /run/lab-logged-in (60 s at most).
case " $(line /proc/cmdline) " in
*" lab.server-gone=1 "*)
    echo "lab-check: the server may go now" > /dev/console
    sleep 20
    echo 3 > /proc/sys/vm/drop_caches
    fact gone_command "$(systemctl --version 2>&1 | head -n 1)"
    i=0
    while [ $i -lt 300 ] && [ ! -e /run/lab-logged-in ]; do sleep 0.2; i=$((i + 1)); done
    fact gone_login "$([ -e /run/lab-logged-in ] && echo yes || echo no)" ;;
esac
fact hostname "$(line /proc/sys/kernel/hostname)"
fact domainname "$(line /proc/sys/kernel/domainname)"
fact pid1 "$(line /proc/1/comm)"
fact pid1_exe "$(readlink /proc/1/exe)"
# An NBD root's supervisor (argv[0] @stateless-nbd, named stateless-nbd), running after the boot.
supervisor=no
for f in /proc/[0-9]*/comm; do
    [ "$(line "$f")" != stateless-nbd ] || supervisor=yes
done
fact nbd_supervisor "$supervisor"
fact package "$(dpkg-query -W -f='${Version}' stateless 2>/dev/null)"
fact kernel "$(line /proc/sys/kernel/osrelease)"
fact level "$(line /etc/stateless-lab/level)"
layers=""
for f in /etc/stateless-lab/from-*; do [ -e "$f" ] && layers="$layers${f##*/} "; done
fact layers "$layers"
cp /proc/mounts "$out/mounts.txt"
cp /proc/swaps "$out/swaps.txt"
# export: an image root's export (source, type, options), where the image file is read from.
awk '$2 == "/" { root = $1 " " $3 " " $4 } $2 == "/etc" { etc = $3 } $2 == "/var" { var = $3 }
     $2 == "/run" { run = $3 } $2 == "/tmp" { tmp = $3 } $2 == "/run/stateless/export" { export = $1 " " $3 " " $4 }
     END { print "root=" root; print "etc=" etc; print "var=" var; print "run=" run; print "tmp=" tmp
           print "export=" export }' \
    "$out/mounts.txt" >> "$out/facts.txt"
fact etc_writable "$(writable /etc)"
fact var_writable "$(writable /var)"
fact root_writable "$(writable /)"
fact report "$([ -f /run/stateless/report.json ] && echo yes || echo no)"
fact etc_hostname "$(line /etc/hostname)"
fact conf_d_hostname "$(line /etc/conf.d/hostname)"
hosts_line=""
while read -r l; do case $l in 127.0.1.1*) hosts_line=$l ;; esac; done < /etc/hosts
fact hosts_line "$hosts_line"
if [ "$(line /proc/1/comm)" = systemd ]; then
    fact system_state "$(systemctl is-system-running 2>/dev/null)"
    fact multi_user "$(systemctl is-active multi-user.target 2>/dev/null)"
    systemctl --no-pager --failed --no-legend > "$out/failed-units.txt" 2>&1
    fact networkd "$(systemctl is-active systemd-networkd 2>/dev/null)"
    # With networkd running, wait (60 s at most) until it has dealt with every link: a link
    # stays "pending" until udev has seen it, and the point is what networkd then does to the
    # interface the root hangs on.
    settled() {
        for f in /run/systemd/netif/links/*; do
            while read -r l; do
                case $l in ADMIN_STATE=pending|ADMIN_STATE=initialized|ADMIN_STATE=configuring) return 1 ;; esac
            done < "$f"
        done
        return 0
    }
    if [ "$(systemctl is-active systemd-networkd 2>/dev/null)" = active ]; then
        i=0
        while [ $i -lt 300 ] && ! settled; do sleep 0.2; i=$((i + 1)); done
        fact networkd_settled_after "$((i / 5)) s"
    fi
    # networkd's own record of each link: the .network file it chose, its state.
    for f in /run/systemd/netif/links/*; do [ -f "$f" ] && { echo "# $f"; cat "$f"; }; done > "$out/networkd-links.txt" 2>/dev/null
elif command -v rc-status > /dev/null; then
    fact runlevel "$(rc-status -r 2>/dev/null)"
    rc-status -a > "$out/rc-status.txt" 2>&1
fi

# What an admin sees: `stateless status`, its JSON and its timeline.
/boot/stateless status > "$out/status.txt" 2>&1
/boot/stateless status --json --svg "$out/timeline.svg" > "$out/status.json" 2>&1
# The layers applied again, as a dry run: a client just booted has all they provide.
/boot/stateless relayer --dry-run > "$out/relayer.txt" 2>&1
cp /proc/cmdline "$out/cmdline.txt"
cp /proc/self/mountstats "$out/mountstats.txt" 2>/dev/null
cp /proc/net/pnp "$out/pnp.txt" 2>/dev/null
cp /proc/net/fib_trie "$out/fib_trie.txt" 2>/dev/null
# The interfaces with an IPv4 route (no `ip` in every image), and each link's state.
fact routed "$(awk 'NR > 1 { print $1 }' /proc/net/route | sort -u | paste -sd, -)"
fact links "$(for l in /sys/class/net/*; do printf '%s=%s\n' "${l##*/}" "$(line "$l/operstate")"; done | paste -sd, -)"
dmesg > "$out/dmesg.txt" 2>/dev/null
for p in /proc/[0-9]*; do echo "${p#/proc/} $(line "$p/comm")"; done > "$out/processes.txt"
# Regular files only: a layer may have put a FIFO here (the fault matrix), which would block.
find /boot/stateless /etc/stateless-lab -maxdepth 1 -type f -exec sha256sum {} + > "$out/checksums.txt" 2>&1
# What the layers made of these dirs: path, type, links, size, blocks, symlink target.
find /etc/stateless-lab /var/lib/stateless-lab -xdev -printf '%p %y %n %s %b %l\n' > "$out/lab-files.txt" 2>/dev/null
fact evil "$([ -e /usr/bin/stateless-lab-evil ] && echo present || echo absent)"
mkdir -p "$out/etc" "$out/run/stateless"
if [ -d /etc/stateless-lab ]; then
    cp -a /etc/stateless-lab "$out/etc/"
    find "$out/etc/stateless-lab" \( -type p -o -type c -o -type b \) -delete
fi
# The report and provenance, not the overlay upper dirs beside them.
cp /run/stateless/report.json /run/stateless/provenance "$out/run/stateless/" 2>/dev/null
# What hands the network on (docs/network.md), and what networkd was given.
cp /run/net-*.conf "$out/run/" 2>/dev/null
cp -L /etc/resolv.conf "$out/etc/resolv.conf" 2>/dev/null
[ -d /run/systemd/network ] && cp -a /run/systemd/network "$out/run/systemd-network"
# ifupdown's state, and the interfaces by name (udev may have renamed them).
[ -d /run/network ] && cp -a /run/network "$out/run/network"
ls /sys/class/net > "$out/interfaces.txt"
uptime=$(line /proc/uptime)
fact uptime_end "${uptime%% *}"
fact check "done"

# The result disk: found by its serial, so other disks may come before it.
dev=""
for b in /sys/block/vd*; do
    [ "$(line "$b/serial")" = stlab-result ] && dev=/dev/${b##*/}
done
if [ -z "$dev" ]; then
    echo "lab-check: no result disk (virtio serial stlab-result)" > /dev/console
    exit 1
fi
tar -cf "$dev" -C "$out" .
sync
echo "lab-check: results written to $dev" > /dev/console

#!/bin/sh
# =====================================================================================
#  LAB SELF-TEST SHIM: NOT the stateless binary.
#  Stands in for /boot/stateless so the QEMU lab can be tested before (or without) the
#  Rust binary: qemu/lab boot --shim qemu/files/fake-shim.sh ...
#  It does roughly what the real shim will do, the simple way:
#  tmpfs on /run and /tmp, tmpfs-backed overlays on /etc and /var, the /diskless layers copied in
#  order (broadcast assumes a /24), /run/stateless/report.json, then exec /sbin/init.
# =====================================================================================
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
echo "fake-shim: lab self-test shim running as PID $$" > /dev/console

mount -t proc proc /proc
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
for d in etc var; do
    mkdir -p /run/lab-shim/$d/upper /run/lab-shim/$d/work
    mount -t overlay overlay -o "lowerdir=/$d,upperdir=/run/lab-shim/$d/upper,workdir=/run/lab-shim/$d/work" /$d ||
        echo "fake-shim: overlay on /$d failed" > /dev/console
done

host=$(cat /proc/sys/kernel/hostname)
ip=$(hostname -I 2>/dev/null | cut -d' ' -f1)
applied=""
for layer in base "networks/${ip%.*}.255" "networks/${ip%.*}.0_24" "labs/${host%%-*}" "hosts/${host%%.*}" "hosts/$ip"; do
    [ -d "/diskless/$layer" ] || continue
    # Entry by entry: `cp -a layer/. /` would try to set the read-only root's own attributes.
    for entry in "/diskless/$layer"/*; do
        cp -a "$entry" / || echo "fake-shim: copying $entry failed" > /dev/console
    done
    applied="$applied\"$layer\","
done

mkdir -p /run/stateless
printf '{"shim":"lab-fake-shim","hostname":"%s","ip":"%s","layers":[%s]}\n' \
    "$host" "$ip" "${applied%,}" > /run/stateless/report.json
umount /proc
exec /sbin/init "$@"

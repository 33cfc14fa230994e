#!/bin/sh
# The layer tree of a lab of mixed machines, in the image at $1 (e.g. /srv/diskless/image).
# Two rooms on two subnets: lab3 (192.0.2.0/24, DHCP names lab3-NN) and the CAD room
# (198.51.100.0/24, cad-NN), and a kiosk that DHCP gives no name (it is known by its address).
set -eu
L=${1:?usage: layer-tree.sh IMAGE}/diskless
put() { mkdir -p "$(dirname "$L/$1")" && printf '%s\n' "$2" > "$L/$1"; }

# Every client.
put base/etc/motd 'Diskless client: changes are lost at reboot.'
put base/etc/ssh/sshd_config 'PermitRootLogin no'
put base/etc/systemd/timesyncd.conf '[Time]
NTP=192.0.2.123'
# Each subnet: by network and prefix, or by broadcast address.
put networks/192.0.2.0_24/etc/resolv.conf 'nameserver 192.0.2.53
search lab.example'
put networks/198.51.100.255/etc/resolv.conf 'nameserver 198.51.100.53
search cad.lab.example'
# Each room: the host name before its first '-'.
put labs/lab3/etc/motd 'lab3: files in /home only.'
put labs/lab3/etc/modprobe.d/lab3.conf 'blacklist pcspkr'
put labs/cad/etc/X11/xorg.conf.d/20-gpu.conf 'Section "Device"
  Identifier "gpu"
  Driver "modesetting"
EndSection'
# One machine by name, its address a symlink to it; its own host key, readable by root only.
put hosts/lab3-12/etc/fstab 'LABEL=lab-scratch /scratch ext4 nofail 0 2'
put hosts/lab3-12/etc/ssh/ssh_host_ed25519_key '(the host key of lab3-12)'
chmod 600 "$L/hosts/lab3-12/etc/ssh/ssh_host_ed25519_key"
ln -s lab3-12 "$L/hosts/192.0.2.15"
# The kiosk, by address only.
put hosts/198.51.100.40/etc/motd 'Kiosk.'

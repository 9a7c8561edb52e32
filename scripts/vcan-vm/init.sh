#!/bin/busybox sh
# PID 1 of the throwaway vcan VM (scripts/vcan_vm.py packs this file as /init of the initramfs).
# Loads virtio + 9p + CAN modules, creates vcan0 (classic, mtu 16) and vcan1 (CAN FD, mtu 72),
# mounts the host root read-only over 9p with writable tmpfs on /tmp and /run, mounts the job
# share (read-write) on /tmp/job, runs /tmp/job/job.sh in a chroot, writes its exit code to
# /tmp/job/exit-code and powers off.
/bin/busybox mkdir -p /proc /sys /dev /newroot
/bin/busybox --install -s /bin
export PATH=/bin

say() { echo "vcan-vm: $*"; }
halt_now() { sync; poweroff -f; sleep 5; }
die() { say "FAILED: $*"; halt_now; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
say "kernel $(uname -r), loading modules"
for m in $(cat /modules.load); do
    insmod "/lib/modules/$m.ko" || die "insmod $m"
done

ip link set lo up || die "loopback"
ip link add dev vcan0 type vcan || die "ip link add vcan0"
ip link set vcan0 mtu 16 || die "vcan0 mtu 16"
ip link set vcan0 up || die "vcan0 up"
ip link add dev vcan1 type vcan || die "ip link add vcan1"
ip link set vcan1 mtu 72 || die "vcan1 mtu 72"
ip link set vcan1 up || die "vcan1 up"

opts=trans=virtio,version=9p2000.L,msize=262144
mount -t 9p -o "$opts,ro,cache=loose" hostroot /newroot || die "mount hostroot"
mount -t proc proc /newroot/proc || die "proc"
mount -t sysfs sysfs /newroot/sys || die "sys"
mount -t devtmpfs devtmpfs /newroot/dev || die "dev"
mkdir -p /newroot/dev/shm /newroot/dev/pts
mount -t tmpfs -o mode=1777 tmpfs /newroot/dev/shm
mount -t devpts devpts /newroot/dev/pts
mount -t tmpfs -o mode=1777 tmpfs /newroot/tmp || die "tmpfs /tmp"
mount -t tmpfs -o mode=755 tmpfs /newroot/run || die "tmpfs /run"
mkdir -p /newroot/tmp/job
mount -t 9p -o "$opts" job /newroot/tmp/job || die "mount job share"
# The project may live under /tmp (a fresh CI clone): mount its own share back at its path.
for word in $(cat /proc/cmdline); do
    case "$word" in edgemon.project=*) project="${word#edgemon.project=}" ;; esac
done
if [ -n "${project:-}" ]; then
    mkdir -p "/newroot$project" 2>/dev/null
    mount -t 9p -o "$opts,ro,cache=loose" project "/newroot$project" || die "mount project"
fi

say "ready"
chroot /newroot /bin/sh /tmp/job/job.sh
echo "$?" > /newroot/tmp/job/exit-code
say "job exited with $(cat /newroot/tmp/job/exit-code)"
umount /newroot/tmp/job
halt_now

#!/bin/bash
# sandbox.sh - porto's own harness for a REAL systemd, system bus and polkitd on a host whose
# PID 1 is not systemd (cgroup v1 + an empty cgroup2 at /sys/fs/cgroup/unified).
# It follows docs/sandbox.md of the project's shared notes (the proven recipe):
#
#   sandbox.sh up          boot systemd as PID 1 of new mount/pid/cgroup/uts/ipc/net namespaces
#   sandbox.sh exec CMD..  run CMD inside (all namespaces, in the sandbox root cgroup, clean env)
#   sandbox.sh status      is it running?
#   sandbox.sh down        SIGKILL the verified PID 1, rmdir the sandbox cgroups, compare the host
#   sandbox.sh check       compare the host with the snapshot taken by "up" (exit 1 if changed)
#
# Environment:
#   SBX_NAME      cgroup and hostname of the sandbox (default sbx-ptests; never "porto*": a
#                 Porto-like daemon on the host may reap /porto* cgroups)
#   SBX_WORKDIR   host directory for state, logs and snapshots (default /var/tmp/sbx-ptests)
#   SBX_RO_BINDS  space-separated host directories bind-mounted READ-ONLY at the same path
#   SBX_TIMEOUT   seconds to wait for the boot (default 60)
#   SBX_STRICT    1 = any change of the host (mountinfo, cgroups, /tmp) fails "down"/"check"
#                 (CI); else changes by other tenants of a shared machine are only printed
#   SBX_KEEP      1 = keep $SBX_WORKDIR/$SBX_NAME after a clean "down" (default: removed)
#
# Why the host is safe:
#   * a dedicated cgroup /$SBX_NAME in EVERY hierarchy (v1, name=systemd, unified) is the root of
#     the sandbox's cgroup namespace: whatever systemd creates lands below it, rmdir'ed on "down";
#   * root = overlayfs (lower = host /, upper = tmpfs): nothing on the host disk changes, except
#     what is bound in on purpose (SBX_RO_BINDS are read-only);
#   * fresh /proc (/proc/sys, /proc/sysrq-trigger read-only), read-only /sys, tmpfs /run /tmp
#     /var/tmp, a minimal /dev (no disks, no kmsg, no watchdog), and a FRESH tmpfs on
#     /sys/fs/cgroup, remounted read-only, with the host's hierarchies mounted in it: systemd's
#     remount of /sys/fs/cgroup hits only that superblock, and it cannot create new hierarchies;
#   * systemd runs in container mode ($container) with a minimal unit set (stub targets + stock
#     dbus.socket, dbus.service, polkit.service, systemd-journald units), generators off;
#     systemd-tmpfiles never runs;
#   * a reduced capability bounding set; teardown is a SIGKILL of PID 1 (no shutdown path).
set -Eeuo pipefail

NAME=${SBX_NAME:-sbx-ptests}
case "$NAME" in porto*|"") echo "sandbox.sh: SBX_NAME must not be empty or start with porto" >&2; exit 2;; esac
WORK=${SBX_WORKDIR:-/var/tmp/sbx-ptests}
STATE=$WORK/$NAME
RT=$STATE/rt                        # empty dir on the host; stage2 mounts its tmpfs here (private ns)
CG_V1="cpu cpuacct cpuset memory devices freezer blkio pids"
# net_cls too when the host has it mounted: a porto inside with traffic
# control must keep its net_cls cgroups below /$NAME like every other's.
if [ -e /sys/fs/cgroup/net_cls/cgroup.procs ]; then CG_V1="$CG_V1 net_cls"; fi
CG_ALL="$CG_V1 systemd unified"
SBX_RO_BINDS=${SBX_RO_BINDS:-}
SBX_TIMEOUT=${SBX_TIMEOUT:-60}
DROP_CAPS=-sys_module,-sys_time,-sys_rawio,-syslog,-sys_pacct,-mac_admin,-mac_override,-wake_alarm,-block_suspend
SYSTEMD=/lib/systemd/systemd
SELF=$(readlink -f "${BASH_SOURCE[0]}")

trap 'echo "sandbox.sh: line $LINENO: \"$BASH_COMMAND\" failed" >&2' ERR
die() { echo "sandbox.sh: $*" >&2; exit 1; }
log() { echo "[sandbox] $*" >&2; }
[ "$(id -u)" = 0 ] || die "must run as root"

stat_field() {  # stat_field PID N: field N (>= 3) of /proc/PID/stat, safe for any comm
    sed -n 's/^.*) //p' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f$(($2 - 2))
}
pid_alive() {   # exists and is not a zombie
    local st; [ -n "${1:-}" ] || return 1
    st=$(stat_field "$1" 3); [ -n "$st" ] && [ "$st" != Z ]
}
read_state() {
    PID1=$(cat "$STATE/pid1" 2>/dev/null || true)
    UPID=$(cat "$STATE/unshare.pid" 2>/dev/null || true)
}
# PID 1 must be alive, the child of our unshare, in another pid namespace, and pid 1 there.
verify_pid1() {
    local p=${1:-}
    pid_alive "$p" || return 1
    [ "$(readlink /proc/$p/ns/pid)" != "$(readlink /proc/self/ns/pid)" ] || return 1
    [ "$(awk '/^NSpid:/{print $NF}' /proc/$p/status)" = 1 ] || return 1
    [ "$(stat_field "$p" 4)" = "$UPID" ] || return 1
}

# --- host snapshot (acceptance: the harness leaves the host unchanged) --------------------------
CANARY=/tmp/.$NAME-canary   # made before the "before" snapshot, removed after the "after" one
snapshot_host() {   # $1 = output prefix
    cat /proc/self/mountinfo > "$1.mountinfo"
    # no mtimes: the cgroup2 root's mtime ticks on any mkdir by anyone
    stat -c '%A %U %G %F %n' /sys/fs/cgroup /sys/fs/cgroup/* > "$1.cgroup-ls"
    # other tenants create and remove cgroups and /tmp entries meanwhile: an entry that vanishes
    # while it is listed must not abort the snapshot
    local h
    { for h in $CG_ALL; do find "/sys/fs/cgroup/$h" -mindepth 1 -maxdepth 1 ! -type d -printf "$h/%f\n" 2>/dev/null; done; true; } | sort > "$1.cgroup-files"
    { for h in $CG_ALL; do find "/sys/fs/cgroup/$h" -mindepth 1 -maxdepth 1 -type d -printf "$h/%f\n" 2>/dev/null; done; true; } | sort > "$1.cgroup-dirs"
    { ls -A /tmp 2>/dev/null; true; } | sort > "$1.tmp-ls"
}
# Strict (SBX_STRICT=1, CI: nothing else runs on the machine): any change fails. Otherwise changes
# that other tenants of a shared machine make (their own /tmp entries, cgroups, mounts) are printed
# but do not fail; what this harness could have caused always fails: a mount that mentions the
# sandbox or /sys/fs/cgroup, a changed /sys/fs/cgroup listing, a cgroup named $NAME left, a
# /tmp entry that disappeared, the host's /sys/fs/cgroup tmpfs no longer rw.
compare_host() {
    local b=$STATE/host-before n=$STATE/host-after rc=0 f
    snapshot_host "$n"
    for f in mountinfo cgroup-ls cgroup-files cgroup-dirs tmp-ls; do
        if diff -u "$b.$f" "$n.$f" > "$n.$f.diff"; then echo "host $f: unchanged"; continue; fi
        echo "host $f: CHANGED"; sed 1,2d "$n.$f.diff" | grep '^[-+]' | sed 's/^/    /'
        if [ "${SBX_STRICT:-0}" = 1 ]; then rc=1; continue; fi
        case $f in
        mountinfo)  if grep '^[-+]' "$n.$f.diff" | sed 1,2d | grep -q -e "$NAME" -e ' /sys/fs/cgroup'; then rc=1
                    else echo "    (not the sandbox's: other tenants of this machine; SBX_STRICT=1 fails on it)"; fi ;;
        cgroup-ls|cgroup-files) rc=1 ;;
        cgroup-dirs) if sed 1,2d "$n.$f.diff" | grep '^[-+]' | grep -q "/$NAME\$"; then rc=1
                    else echo "    (cgroups of other tenants; SBX_STRICT=1 fails on it)"; fi ;;
        tmp-ls)     echo "    (other tenants; SBX_STRICT=1 fails on it; the canary decides here)" ;;
        esac
    done
    if [ -e "$CANARY" ]; then echo "host /tmp canary: still there"
    else echo "host /tmp canary $CANARY: GONE (something cleaned the host's /tmp)"; rc=1; fi
    if ls -d /sys/fs/cgroup/*/"$NAME" 2>/dev/null; then echo "host cgroups: /$NAME LEFT OVER"; rc=1
    else echo "host cgroups: no /$NAME left in any hierarchy"; fi
    if grep -q ' /sys/fs/cgroup rw,' /proc/self/mountinfo; then echo "host /sys/fs/cgroup tmpfs: still rw"
    else echo "host /sys/fs/cgroup tmpfs: NOT rw"; rc=1; fi
    return $rc
}

# --- the minimal unit set, copied to /run/sbx/units inside ------------------------------------
write_units() {
    local u=$STATE/units t
    rm -rf "$u"; mkdir -p "$u"
    for t in sysinit basic sockets timers paths slices local-fs remote-fs network network-online \
             nss-user-lookup multi-user shutdown; do
        printf '[Unit]\nDescription=%s.target (sandbox stub)\n' "$t" > "$u/$t.target"
    done
    local wants="dbus.socket dbus.service systemd-journald.socket systemd-journald-dev-log.socket systemd-journald.service polkit.service"
    printf '[Unit]\nDescription=Sandbox boot target\nWants=%s\nAfter=%s\nAllowIsolate=yes\n' "$wants" "$wants" > "$u/sbx.target"
    for t in dbus.socket dbus.service polkit.service systemd-journald.service systemd-journald.socket \
             systemd-journald-dev-log.socket; do
        cp "/lib/systemd/system/$t" "$u/"     # stock, unmodified
    done
}

make_cgroups() {
    local h
    for h in $CG_ALL; do
        [ -d "/sys/fs/cgroup/$h" ] || die "missing hierarchy /sys/fs/cgroup/$h"
        [ -e "/sys/fs/cgroup/$h/$NAME" ] && die "/sys/fs/cgroup/$h/$NAME exists (stale sandbox? run: $0 down)"
    done
    for h in $CG_ALL; do mkdir "/sys/fs/cgroup/$h/$NAME"; done
    cat /sys/fs/cgroup/cpuset/cpuset.cpus > "/sys/fs/cgroup/cpuset/$NAME/cpuset.cpus"
    cat /sys/fs/cgroup/cpuset/cpuset.mems > "/sys/fs/cgroup/cpuset/$NAME/cpuset.mems"
}

remove_cgroups() {  # wait until empty, then rmdir bottom-up, only below /sys/fs/cgroup/<h>/$NAME
    local h d i left=0
    for i in $(seq 1 100); do
        left=$(for h in $CG_ALL; do d=/sys/fs/cgroup/$h/$NAME; [ -d "$d" ] || continue; find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null || true; done | wc -l)
        [ "$left" = 0 ] && break
        sleep 0.1
    done
    [ "$left" = 0 ] || log "WARNING: $left processes still in the sandbox cgroups"
    for h in $CG_ALL; do
        d=/sys/fs/cgroup/$h/$NAME
        for i in $(seq 1 50); do
            [ -d "$d" ] || break
            find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
            [ -d "$d" ] && sleep 0.1
        done
        if [ -d "$d" ]; then log "WARNING: could not remove $d"; fi
    done
}

cmd_up() {
    read_state
    if pid_alive "${PID1:-}"; then die "already running (PID1=$PID1)"; fi
    [ -e /proc/self/ns/cgroup ] || die "no cgroup namespaces"
    [ -x "$SYSTEMD" ] || die "no $SYSTEMD"
    grep -q ' /sys/fs/cgroup rw,' /proc/self/mountinfo || die "host /sys/fs/cgroup is not rw"
    rm -rf "$STATE"; mkdir -p "$STATE" "$RT"
    touch "$CANARY"
    snapshot_host "$STATE/host-before"
    write_units
    make_cgroups
    local t0 i; t0=$(date +%s%N)
    # launcher (new session) -> "__enter" -> unshare -> "__stage2" (pid 1) -> systemd
    setsid -f /bin/bash "$SELF" __enter </dev/null >"$STATE/console.log" 2>&1
    for i in $(seq 1 100); do [ -s "$STATE/unshare.pid" ] && break; sleep 0.05; done
    UPID=$(cat "$STATE/unshare.pid" 2>/dev/null || true)
    PID1=
    for i in $(seq 1 100); do
        PID1=$(pgrep -P "${UPID:-0}" || true)
        [ -n "$PID1" ] && verify_pid1 "$PID1" && break
        pid_alive "$UPID" || break
        sleep 0.05
    done
    if [ -n "$PID1" ] && verify_pid1 "$PID1"; then
        # the unshare parent (host pid ns) must not stay in the sandbox root cgroup, where systemd
        # would see a pid it cannot name: park it in the host root cgroups, then let stage2 go on
        local h
        for h in $CG_ALL; do echo "$UPID" > "/sys/fs/cgroup/$h/cgroup.procs"; done
        touch "$STATE/go"
        for i in $(seq 1 100); do [ "$(cat /proc/$PID1/comm 2>/dev/null)" = systemd ] && break; sleep 0.05; done
    fi
    if ! { [ -n "$PID1" ] && verify_pid1 "$PID1"; }; then
        log "sandbox failed to start:"; cat "$STATE/console.log" >&2 || true
        [ -n "$UPID" ] && pid_alive "$UPID" && kill -KILL "$UPID" 2>/dev/null
        remove_cgroups; die "start failed"
    fi
    echo "$PID1" > "$STATE/pid1"
    local st
    # systemctl talks to systemd's private socket: wait for it, then for the boot
    for i in $(seq 1 $((SBX_TIMEOUT * 20))); do
        [ -S "/proc/$PID1/root/run/systemd/private" ] && break
        verify_pid1 "$PID1" || break
        sleep 0.05
    done
    st=$(timeout "$SBX_TIMEOUT" "$SELF" exec systemctl is-system-running --wait 2>&1 || true)
    log "PID1=$PID1 boot state: $st; boot time: $(( ($(date +%s%N) - t0) / 1000000 )) ms"
    case "$st" in running|degraded) ;; *) log "boot did not finish; see $STATE/console.log"; return 1;; esac
    echo "PID1=$PID1"
}

# --- in a new session, still in the host namespaces ------------------------------------------
cmd_enter() {
    local h
    for h in $CG_ALL; do echo $$ > "/sys/fs/cgroup/$h/$NAME/cgroup.procs"; done
    echo $$ > "$STATE/unshare.pid"      # exec keeps the pid: it is the unshare process
    exec unshare --mount --pid --cgroup --uts --ipc --net --propagation private \
        --kill-child=SIGKILL -- /bin/bash "$SELF" __stage2
}

# --- pid 1 of the new pid namespace, in the new namespaces ------------------------------------
cmd_stage2() {
    set -x
    [ $$ = 1 ] || die "stage2 must be pid 1"
    ! grep -v ':/$' /proc/self/cgroup || die "not at the cgroup namespace root"
    mount -t tmpfs -o mode=755,size=8g "$NAME-rt" "$RT"
    mkdir "$RT/upper" "$RT/work" "$RT/root"
    mount -t overlay -o "lowerdir=/,upperdir=$RT/upper,workdir=$RT/work" "$NAME-root" "$RT/root"
    local R=$RT/root f c b
    mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
    for f in sys sysrq-trigger; do
        [ -e "$R/proc/$f" ] || continue
        mount --bind "$R/proc/$f" "$R/proc/$f"; mount -o remount,bind,ro "$R/proc/$f"
    done
    # /sys read-only; in the private netns a fresh sysfs has its own superblock
    mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$R/sys"
    if [ "$(stat -c %d "$R/sys")" = "$(stat -c %d /sys)" ]; then
        umount "$R/sys"; mount --bind /sys "$R/sys"; mount -o remount,bind,ro,nosuid,nodev,noexec "$R/sys"
    fi
    # a FRESH tmpfs on /sys/fs/cgroup, the hierarchies in it (rooted at /$NAME), then read-only
    mount -t tmpfs -o nosuid,nodev,noexec,mode=755,size=64k "$NAME-cgroup" "$R/sys/fs/cgroup"
    [ "$(stat -c %d "$R/sys/fs/cgroup")" != "$(stat -c %d /sys/fs/cgroup)" ] || die "cgroup tmpfs is not fresh"
    for c in $CG_V1; do
        mkdir "$R/sys/fs/cgroup/$c"; mount -t cgroup -o "nosuid,nodev,noexec,$c" cgroup "$R/sys/fs/cgroup/$c"
    done
    mkdir "$R/sys/fs/cgroup/systemd"
    mount -t cgroup -o nosuid,nodev,noexec,none,name=systemd cgroup "$R/sys/fs/cgroup/systemd"
    mkdir "$R/sys/fs/cgroup/unified"
    mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$R/sys/fs/cgroup/unified"
    mount -o remount,ro,nosuid,nodev,noexec,mode=755,size=64k "$R/sys/fs/cgroup"
    # /dev: a few nodes, own devpts/shm/mqueue; no disks, no kmsg, no watchdog
    mount -t tmpfs -o nosuid,mode=755,size=64k "$NAME-dev" "$R/dev"
    mknod -m 666 "$R/dev/null" c 1 3; mknod -m 666 "$R/dev/zero" c 1 5; mknod -m 666 "$R/dev/full" c 1 7
    mknod -m 666 "$R/dev/random" c 1 8; mknod -m 666 "$R/dev/urandom" c 1 9; mknod -m 666 "$R/dev/tty" c 5 0
    mkdir -m 755 "$R/dev/net"; mknod -m 666 "$R/dev/net/tun" c 10 200
    mknod -m 666 "$R/dev/fuse" c 10 229
    mkdir "$R/dev/pts" "$R/dev/shm" "$R/dev/mqueue"
    mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5,nosuid,noexec devpts "$R/dev/pts"
    ln -s pts/ptmx "$R/dev/ptmx"
    mount -t tmpfs -o nosuid,nodev,mode=1777 shm "$R/dev/shm"
    mount -t mqueue -o nosuid,nodev,noexec mqueue "$R/dev/mqueue"
    ln -s /proc/self/fd "$R/dev/fd"; ln -s /proc/self/fd/0 "$R/dev/stdin"
    ln -s /proc/self/fd/1 "$R/dev/stdout"; ln -s /proc/self/fd/2 "$R/dev/stderr"
    # systemd's console: a regular file in the sandbox's own tmpfs (no host tty)
    touch "$RT/console" "$R/dev/console"; mount --bind "$RT/console" "$R/dev/console"
    mount -t tmpfs -o nosuid,nodev,mode=755,size=1g "$NAME-run" "$R/run"
    mount -t tmpfs -o nosuid,nodev,mode=1777,size=4g "$NAME-tmp" "$R/tmp"
    mount -t tmpfs -o nosuid,nodev,mode=1777,size=4g "$NAME-vartmp" "$R/var/tmp"
    mkdir -p "$R/run/sbx/units" "$R/run/sbx/empty"
    cp -a "$STATE/units/." "$R/run/sbx/units/"
    echo "$NAME" > "$R/etc/hostname"
    for b in $SBX_RO_BINDS; do
        mkdir -p "$R$b"; mount --bind "$b" "$R$b"; mount -o remount,bind,ro "$R$b"
    done
    hostname "$NAME"
    for i in $(seq 1 200); do [ -e "$STATE/go" ] && break; sleep 0.05; done
    [ -e "$STATE/go" ] || die "no go from the host side"
    cd "$R"; mkdir .sbx-oldroot
    pivot_root . .sbx-oldroot
    cd /
    umount -l /.sbx-oldroot; rmdir /.sbx-oldroot
    set +x
    exec setpriv --bounding-set "$DROP_CAPS" -- env -i \
        container=sbx-ptests \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        LANG=C.UTF-8 \
        SYSTEMD_UNIT_PATH=/run/sbx/units:/run/systemd/transient:/run/systemd/system.control:/lib/systemd/system \
        SYSTEMD_GENERATOR_PATH=/run/sbx/empty \
        SYSTEMD_ENVIRONMENT_GENERATOR_PATH=/run/sbx/empty \
        "$SYSTEMD" --system --unit=sbx.target --log-target=console --log-level=info \
        --log-color=no --show-status=no
}

cmd_exec() {
    read_state
    verify_pid1 "${PID1:-}" || die "sandbox not running"
    # The entered process first moves itself into the sandbox root cgroup in every hierarchy.
    exec nsenter -t "$PID1" -m -u -i -n -p -C -r -w \
        setpriv --bounding-set "$DROP_CAPS" -- \
        env -i PATH=/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 TERM=dumb SYSTEMD_COLORS=0 SYSTEMD_PAGER= SYSTEMD_LESS= \
        DBUS_SYSTEM_BUS_ADDRESS=unix:path=/run/dbus/system_bus_socket \
        /bin/sh -c 'for f in /sys/fs/cgroup/*/cgroup.procs; do echo $$ > "$f" || exit 125; done; exec "$@"' sbx-exec "$@"
}

cmd_status() {
    read_state
    if verify_pid1 "${PID1:-}"; then echo "running: PID1=$PID1"; else echo "not running"; exit 1; fi
}

cmd_down() {
    read_state
    if [ -n "${PID1:-}" ] && pid_alive "$PID1"; then
        verify_pid1 "$PID1" || die "PID $PID1 does not look like our sandbox's PID 1; refusing to kill"
        log "SIGKILL sandbox PID1 $PID1 (ends the whole pid namespace)"
        kill -KILL "$PID1"
    fi
    local i
    for i in $(seq 1 100); do
        pid_alive "${PID1:-}" || pid_alive "${UPID:-}" || break
        sleep 0.05
    done
    remove_cgroups
    rmdir "$RT" 2>/dev/null || log "WARNING: $RT not removed"
    rm -f "$STATE/pid1"
    local rc=0
    if [ -e "$STATE/host-before.mountinfo" ]; then compare_host || rc=1; fi
    rm -f "$CANARY"
    if [ $rc = 0 ] && [ "${SBX_KEEP:-0}" != 1 ]; then
        rm -rf "$STATE"; rmdir "$WORK" 2>/dev/null || true
    else
        log "state kept in $STATE"
    fi
    return $rc
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    exec) shift; cmd_exec "$@" ;;
    status) cmd_status ;;
    check) compare_host ;;
    __enter) cmd_enter ;;
    __stage2) cmd_stage2 ;;
    *) echo "usage: $0 up|down|exec CMD...|status|check" >&2; exit 2 ;;
esac

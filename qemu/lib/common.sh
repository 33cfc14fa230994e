# shellcheck shell=bash
# Shared helpers for qemu/lab: messages, the cache folder, input hashes and stamp files,
# and running long steps with visible progress.

# The cache lives outside the repository and is kept between runs.
LAB_CACHE=${STATELESS_LAB_CACHE:-/var/cache/stateless-lab}
# Marker that proves a folder is ours before `lab clean` deletes anything in it.
LAB_CACHE_MARKER=.stateless-lab-cache

log()  { printf 'lab: %s\n' "$*" >&2; }
warn() { printf 'lab: warning: %s\n' "$*" >&2; }
die()  { printf 'lab: error: %s\n' "$*" >&2; exit 1; }

# Seconds since the epoch with one decimal, for timings.
now() { date +%s.%1N; }
# elapsed START -> "12.3"
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

require_root() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (network namespaces, mounts, apt-get)"
}

# Creates the cache folder (and its marker) if needed.
cache_init() {
    [[ $LAB_CACHE == /* ]] || die "STATELESS_LAB_CACHE must be an absolute path: $LAB_CACHE"
    mkdir -p "$LAB_CACHE"
    [[ -e $LAB_CACHE/$LAB_CACHE_MARKER ]] || echo "stateless QEMU lab cache, see qemu/README.md" > "$LAB_CACHE/$LAB_CACHE_MARKER"
}

# cache_lock NAME: exclusive lock on one cached artifact for the rest of the process, so two
# builds of the same thing never race (different artifacts may build in parallel).
declare -A LAB_LOCKS_HELD=()
cache_lock() {
    local file=$LAB_CACHE/.lock-$1 fd
    [[ -z ${LAB_LOCKS_HELD[$1]:-} ]] || return 0
    exec {fd}>"$file"
    LAB_LOCKS_HELD[$1]=$fd
    if ! flock -n "$fd"; then
        log "another lab process is building $1 ($file), waiting"
        flock "$fd"
    fi
}

# Installed version of a Debian package ("none" if missing).
pkg_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo none; }

# inputs_hash TEXT... -> sha256 of all arguments (each on its own line).
inputs_hash() { printf '%s\n' "$@" | sha256sum | cut -d' ' -f1; }

# stamp_ok NAME HASH: true when the stamp for NAME records HASH (the output is up to date).
stamp_ok() { [[ -f $LAB_CACHE/stamps/$1 && $(cat "$LAB_CACHE/stamps/$1") == "$2" ]]; }
stamp_write() { mkdir -p "$LAB_CACHE/stamps"; echo "$2" > "$LAB_CACHE/stamps/$1"; }
stamp_clear() { rm -f "$LAB_CACHE/stamps/$1"; }

# run_logged DESCRIPTION LOGFILE COMMAND...
# Runs COMMAND with its output in LOGFILE and prints a progress line every 30 s
# (elapsed time and the last line of the log). On failure, shows the log's tail.
run_logged() {
    local desc=$1 logfile=$2; shift 2
    local start pid rc=0 next=30 last
    start=$(now)
    log "$desc (log: $logfile)"
    "$@" > "$logfile" 2>&1 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        sleep 1
        if awk -v a="$start" -v b="$(now)" -v n="$next" 'BEGIN { exit !(b - a >= n) }'; then
            last=$(tail -n 1 "$logfile" 2>/dev/null | cut -c1-100)
            log "  ... ${desc}: $(elapsed "$start") s: $last"
            next=$((next + 30))
        fi
    done
    wait "$pid" || rc=$?
    if [[ $rc -ne 0 ]]; then
        warn "$desc failed (exit $rc) after $(elapsed "$start") s; last lines of $logfile:"
        tail -n 25 "$logfile" >&2
        return "$rc"
    fi
    log "  done: $desc in $(elapsed "$start") s"
}

# Cleanup stack: on_exit CMD ARGS... registers a command; they run in reverse order when the
# lab exits for any reason (normal end, error, Ctrl-C, TERM). Each runs once, errors ignored.
LAB_CLEANUPS=()
on_exit() { LAB_CLEANUPS+=("$(printf '%q ' "$@")"); }
run_cleanups() {
    local i
    for ((i = ${#LAB_CLEANUPS[@]} - 1; i >= 0; i--)); do
        eval "${LAB_CLEANUPS[i]}" || true
    done
    LAB_CLEANUPS=()
}
trap run_cleanups EXIT
trap 'log "interrupted (SIGINT), cleaning up"; exit 130' INT
trap 'log "terminated (SIGTERM), cleaning up"; exit 143' TERM

# pid_alive PID: the process exists and is not a zombie.
pid_alive() {
    local state
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [[ -n $state && $state != Z ]]
}

# kill_wait PID [SECS]: TERM, wait up to SECS (default 10) for it to go, then KILL.
# The caller still reaps its own children with `wait`.
kill_wait() {
    local pid=$1 secs=${2:-10} i
    pid_alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < secs * 10; i++)); do
        pid_alive "$pid" || return 0
        sleep 0.1
    done
    warn "pid $pid ignored SIGTERM for $secs s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
}

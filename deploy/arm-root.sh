# Sourced by deploy/test-arm.sh, build-image.sh and test-image.sh: Debian roots of the
# Pi's architectures on this x86-64 machine, through qemu user-mode emulation, and the
# checks they share. The caller sets WORK, SUITE, MIRROR and FRESH, defines fail, and
# runs cleanup_binfmt on exit when it registered anything.
# shellcheck shell=bash

BINFMT=/proc/sys/fs/binfmt_misc

# qemu's name for a Debian architecture.
qemu_arch() {
    case $1 in
        arm64) echo aarch64 ;;
        armhf) echo arm ;;
        *) fail "unknown architecture $1 (arm64 or armhf)" ;;
    esac
}

# Runs of these scripts may go on side by side (make image while make test-arm runs) and
# share the one binfmt_misc: an entry, and the mount, stay while any run that uses them is
# alive, and the last one to leave removes what one of them made. Under $BINFMT_USERS, a
# folder per entry holds a file per run using it (named by its PID) and, when one of our
# runs registered it, "ours"; "mounted" says one of them mounted binfmt_misc. Every
# change happens under the lock. A run killed outright (SIGKILL) leaves its file, which
# the next run drops since no such process is alive.
BINFMT_USERS=/run/simedge-binfmt
BINFMT_LOCK=""
USED_ENTRIES=()

lock_binfmt() {
    mkdir -p "$BINFMT_USERS"
    exec {BINFMT_LOCK}>"$BINFMT_USERS/lock"
    flock "$BINFMT_LOCK"
}

unlock_binfmt() { flock -u "$BINFMT_LOCK"; }

# Under the lock: the users' files of runs no longer alive are dropped.
forget_dead_users() {
    local user
    for user in "$BINFMT_USERS"/qemu-*/[0-9]*; do
        [ -e "$user" ] || continue
        kill -0 "${user##*/}" 2>/dev/null || rm -f "$user"
    done
}

# Under the lock: whether any run still uses the entry.
entry_in_use() { compgen -G "$BINFMT_USERS/$1/[0-9]*" >/dev/null; }

# shellcheck disable=SC2317  # run by the EXIT trap
cleanup_binfmt() {
    [ -n "$BINFMT_LOCK" ] || return 0
    lock_binfmt
    local entry folder any_in_use=0
    for entry in "${USED_ENTRIES[@]}"; do rm -f "$BINFMT_USERS/$entry/$$"; done
    forget_dead_users
    for folder in "$BINFMT_USERS"/qemu-*; do
        [ -d "$folder" ] || continue
        entry=${folder##*/}
        if entry_in_use "$entry"; then
            any_in_use=1
            echo "${0##*/}: binfmt $entry is still used by another run; left to it"
            continue
        fi
        if [ -e "$folder/ours" ] && [ -e "$BINFMT/$entry" ]; then
            echo -1 >"$BINFMT/$entry" && echo "${0##*/}: unregistered binfmt $entry"
        fi
        rm -rf "$folder"
    done
    if [ -e "$BINFMT_USERS/mounted" ] && [ "$any_in_use" = 0 ]; then
        umount "$BINFMT" && echo "${0##*/}: unmounted $BINFMT"
        rm -f "$BINFMT_USERS/mounted"
    fi
    unlock_binfmt
}

# Registers qemu-ARCH from qemu-user-static's description with flags P (argv[0] kept, as
# the -P interpreters expect) and F (the interpreter opened now, so it works inside the
# chroot without a copy there). An entry present that none of our runs made is someone
# else's: used, kept.
register_binfmt() {
    local name=qemu-$1 description=/usr/share/binfmts/qemu-$1
    lock_binfmt
    forget_dead_users
    if ! mountpoint -q "$BINFMT"; then
        mount -t binfmt_misc binfmt_misc "$BINFMT"
        touch "$BINFMT_USERS/mounted"
    fi
    mkdir -p "$BINFMT_USERS/$name"
    touch "$BINFMT_USERS/$name/$$"
    USED_ENTRIES+=("$name")
    field() { sed -n "s/^$1 //p" "$description"; }
    if [ ! -e "$BINFMT/$name" ]; then
        printf ':%s:M:%s:%s:%s:%s:PF\n' "$name" "$(field offset)" "$(field magic)" "$(field mask)" \
            "$(field interpreter)" >"$BINFMT/register"
        touch "$BINFMT_USERS/$name/ours"
        echo "${0##*/}: registered binfmt $name ($(field interpreter), flags PF)"
    elif [ -e "$BINFMT_USERS/$name/ours" ]; then
        echo "${0##*/}: binfmt $name is registered by another run of ours; shared with it"
    else
        echo "${0##*/}: binfmt $name is already registered; using it, leaving it"
    fi
    unlock_binfmt
}

# The base root of one architecture, made once: the first stage of debootstrap here, the
# second inside the root under qemu.
make_base() {
    local arch=$1 base=$2
    if [ "$FRESH" = 1 ]; then rm -rf "$base" "$base.partial"; fi
    [ -e "$base/.complete" ] && return
    if [ ! -e "$base.partial/.first-stage" ]; then
        rm -rf "$base.partial"
        nice -n 10 debootstrap --foreign --arch="$arch" --variant=minbase "$SUITE" "$base.partial" "$MIRROR" \
            >"$WORK/$arch-debootstrap.log" 2>&1 || fail "debootstrap (first stage) failed, see $WORK/$arch-debootstrap.log"
        touch "$base.partial/.first-stage"
    fi
    # In a container (/.dockerenv) debootstrap makes /proc a symlink to the host's.
    if [ -L "$base.partial/proc" ]; then rm -f "$base.partial/proc" && mkdir "$base.partial/proc"; fi
    # shellcheck disable=SC2016  # $1 is the inner shell's
    unshare --mount --propagation private sh -c '
        mount -t proc proc "$1/proc" && exec nice -n 10 chroot "$1" /debootstrap/debootstrap --second-stage' \
        second-stage "$base.partial" >>"$WORK/$arch-debootstrap.log" 2>&1 ||
        fail "debootstrap --second-stage failed, see $WORK/$arch-debootstrap.log"
    touch "$base.partial/.complete"
    mv "$base.partial" "$base"
}

# This checkout's tracked files and new ones not ignored (what a checkout of this tree
# would hold) into DEST.
copy_source() {
    mkdir -p "$1"
    git -C "$REPO" ls-files -z --cached --others --exclude-standard |
        tar -C "$REPO" --null --ignore-failed-read -T - -cf - | tar -C "$1" -xf -
}

# Mounts what programs in ROOT need (call it in a private mount namespace, where the
# mounts end with the namespace) and sets what in_root runs commands with.
enter_root() {
    ROOT_DIR=$1
    mount -t proc proc "$ROOT_DIR/proc"
    mount --rbind /dev "$ROOT_DIR/dev"
    # Ptys of the root's own: the emulated modems and tmux open them.
    mount -t devpts -o newinstance,ptmxmode=0666 devpts "$ROOT_DIR/dev/pts"
    mount --bind "$ROOT_DIR/dev/pts/ptmx" "$ROOT_DIR/dev/ptmx"
    mount -t tmpfs tmpfs "$ROOT_DIR/run"
    mount -t tmpfs tmpfs "$ROOT_DIR/tmp"
    chmod 1777 "$ROOT_DIR/tmp"
    cp /etc/resolv.conf "$ROOT_DIR/etc/resolv.conf"
    # The root's environment is built from scratch; only pip's trust store comes along,
    # for machines whose HTTPS goes through an intercepting proxy (PIP_CERT on the host).
    ROOT_ENV=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HOME=/root)
    if [ -n "${PIP_CERT:-}" ] && [ -r "$PIP_CERT" ]; then
        mkdir -p "$ROOT_DIR/usr/src"
        cp "$PIP_CERT" "$ROOT_DIR/usr/src/host-pip-cert.pem"
        ROOT_ENV+=(PIP_CERT=/usr/src/host-pip-cert.pem)
    fi
    IN_ROOT=(nice -n 10 chroot "$ROOT_DIR" /usr/bin/env -i "${ROOT_ENV[@]}")
}

# A command in the root entered last, niced: this machine is shared. To start one in the
# background, use "${IN_ROOT[@]}" COMMAND &, so that $! is the command's own process
# (a function in the background is a subshell, and killing it would orphan the command).
in_root() { "${IN_ROOT[@]}" "$@"; }

# Waits until FILE holds a line matching the extended regular expression, for at most
# SECONDS; tail -F wakes on each write, so nothing is polled. The tail is ended as soon
# as the line is there.
wait_for_line() {
    local file=$1 pattern=$2 seconds=$3 found=1 lines tail_pid
    exec {lines}< <(exec timeout "$seconds" tail -n +1 -F "$file" 2>/dev/null)
    tail_pid=$!
    if grep -E -m1 -q -- "$pattern" <&"$lines"; then found=0; fi
    kill "$tail_pid" 2>/dev/null || true
    exec {lines}<&-
    return "$found"
}

# The dashboard login for real: `SSH_COMMAND... -tt dashboard@127.0.0.1` in a tmux
# terminal of 80x24 (tmux server TMUX_SOCKET) until the live dashboard shows, for at most
# SECONDS; the screen is saved to SCREEN_FILE and printed; then q must end the connection
# with ssh's status 0.
dashboard_login() {
    local tmux_socket=$1 screen_file=$2 seconds=$3
    shift 3
    local screen="" waited
    tmux -L "$tmux_socket" new-session -d -s login -x 80 -y 24 \
        "$* -tt dashboard@127.0.0.1; echo \"ssh ended: \$?\" >$screen_file.exit"
    # tmux has no event for a changed screen: it is read once a second.
    for waited in $(seq "$seconds"); do
        screen=$(tmux -L "$tmux_socket" capture-pane -p -t login 2>/dev/null || true)
        if grep -q "● live" <<<"$screen"; then break; fi
        sleep 1
    done
    printf '%s\n' "$screen" | tee "$screen_file"
    grep -q "● live" <<<"$screen" || fail "the dashboard did not show the live site over SSH in ${waited}s"
    [ "$(wc -l <<<"$screen")" -le 24 ] || fail "the dashboard drew more than 24 lines"
    echo "ok  the dashboard drew at 80x24 over ssh -tt after ${waited}s"
    tmux -L "$tmux_socket" send-keys -t login q
    wait_for_line "$screen_file.exit" "^ssh ended: 0$" 60 || fail "q did not end the SSH connection cleanly"
    echo "ok  q ended the connection: $(cat "$screen_file.exit")"
}

# Ends the tmux server SOCKET (tmux -L) and removes its socket file, which tmux leaves
# behind when its server is killed.
# shellcheck disable=SC2317  # run by the callers' EXIT traps
end_tmux() {
    tmux -L "$1" kill-server 2>/dev/null || true
    rm -f "${TMUX_TMPDIR:-/tmp}/tmux-$(id -u)/$1"
}

# ssh's options for the test logins into DASHBOARD_SSH_OPTIONS: only KEY, no prompts,
# any host key (each root and image makes its own at its first start), quiet.
dashboard_ssh_options() {
    DASHBOARD_SSH_OPTIONS=(-i "$1" -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=no
        -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=60)
}

# The dashboard login on 127.0.0.1:PORT refuses everything but the dashboard: a session
# without a terminal (ssh -T, as a shell request) in one plain line, a command, port
# forwarding (to FORWARD_TARGET, host:port as the site sees it) and SFTP. What ssh and
# sftp printed goes to LOG_PREFIX-forward.log and -sftp.log. Call dashboard_ssh_options
# first.
dashboard_refusals() {
    local port=$1 forward_target=$2 log=$3 refused
    local ssh=(ssh -p "$port" "${DASHBOARD_SSH_OPTIONS[@]}")
    refused=$("${ssh[@]}" -T dashboard@127.0.0.1 </dev/null 2>&1) && fail "ssh -T was let in"
    [ "$refused" = "simedge tui: needs a terminal and has none (connect with ssh -t, not ssh -T or a command)" ] ||
        fail "ssh -T got \"$refused\""
    echo "ok  ssh -T refused in one line: $refused"
    refused=$("${ssh[@]}" dashboard@127.0.0.1 'echo shell-for-dashboard' </dev/null 2>&1) && fail "a command ran"
    if grep -q "shell-for-dashboard" <<<"$refused"; then fail "the dashboard user ran a command"; fi
    echo "ok  a command is refused: $refused"
    if "${ssh[@]}" -W "$forward_target" dashboard@127.0.0.1 </dev/null >"$log-forward.log" 2>&1; then
        fail "port forwarding was allowed"
    fi
    echo "ok  port forwarding refused: $(tr '\n' ' ' <"$log-forward.log")"
    if sftp -b - -P "$port" "${DASHBOARD_SSH_OPTIONS[@]}" dashboard@127.0.0.1 <<<"ls" >"$log-sftp.log" 2>&1; then
        fail "SFTP was allowed"
    fi
    echo "ok  SFTP refused: $(tr '\n' ' ' <"$log-sftp.log")"
}

# Installs those of the named Debian packages that are missing on this machine.
ensure_packages() {
    local missing=() package
    for package in "$@"; do
        dpkg-query -W "$package" >/dev/null 2>&1 || missing+=("$package")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

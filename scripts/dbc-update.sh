#!/bin/sh
# Update the DBC set of a gateway, checked before use, with rollback (docs/raspberry-pi.md, §8).
#
#   sudo dbc-update.sh install NAME DIR   # DIR's *.dbc and *.map.toml become /etc/edgemon/dbc.d/NAME
#   sudo dbc-update.sh rollback           # back to the set in use before the last switch
#   then: sudo systemctl restart edgemon-agent   (the agent reads its DBCs at start)
#
# /etc/edgemon/dbc is a link to the set in use; agent.toml names files under /etc/edgemon/dbc/.
# `install` copies the new set beside the others, runs `edgemon-agent check` on agent.toml with
# its /etc/edgemon/dbc/ paths pointed at the new set (DBCs, signal map and the local monitors
# together), and switches the link in one step only when the check passes; the set it replaces
# is remembered as dbc.previous. A set of the same NAME is never overwritten.
# --root DIR works under DIR instead of / (tests): the configuration's /etc/edgemon paths too.
set -eu

ROOT=/
while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT=$2; shift 2 ;;
        *) break ;;
    esac
done
say() { echo "dbc-update: $*"; }
die() { echo "dbc-update: $*" >&2; exit 1; }
[ $# -ge 1 ] || die "usage: dbc-update.sh [--root DIR] install NAME DIR | rollback"

ROOT=$(cd "$ROOT" && pwd) || die "no such root directory"
[ "$ROOT" = / ] && R= || R=$ROOT
CONF=$R/etc/edgemon
AGENT=$R/opt/edgemon/venv/bin/edgemon-agent

switch() {  # the link dbc -> $1, atomically, the current target remembered as dbc.previous
    current=$(readlink "$CONF/dbc") || die "$CONF/dbc is not a link (install-gateway.sh makes it)"
    ln -sfn "$1" "$CONF/dbc.new"
    mv -T "$CONF/dbc.new" "$CONF/dbc"
    ln -sfn "$current" "$CONF/dbc.previous"
    say "dbc -> $1 (was $current); now: systemctl restart edgemon-agent"
}

case "$1" in
    install)
        [ $# -eq 3 ] || die "usage: dbc-update.sh install NAME DIR"
        NAME=$2
        SRC=$3
        case "$NAME" in */*|.*|'') die "NAME: a plain folder name" ;; esac
        SET=$CONF/dbc.d/$NAME
        [ ! -e "$SET" ] || die "$SET exists: choose a new NAME"
        ls "$SRC"/*.dbc >/dev/null 2>&1 || die "no .dbc file in $SRC"
        install -d -m 0750 "$SET"
        for file in "$SRC"/*.dbc "$SRC"/*.map.toml; do
            if [ -f "$file" ]; then install -m 0640 "$file" "$SET/"; fi
        done
        if [ -z "$R" ]; then chown -R root:edgemon "$SET"; fi
        CHECK=$CONF/.dbc-update-check.toml  # beside agent.toml: relative paths resolve the same
        trap 'rm -f "$CHECK"' EXIT
        sed -e "s|\"/etc/edgemon/dbc/|\"/etc/edgemon/dbc.d/$NAME/|g" \
            -e "s|\"/etc/edgemon/|\"$R/etc/edgemon/|g" "$CONF/agent.toml" >"$CHECK"
        if ! "$AGENT" check --config "$CHECK"; then
            rm -rf "$SET"
            die "the set $NAME does not pass the check with agent.toml: removed, dbc unchanged"
        fi
        switch "dbc.d/$NAME"
        ;;
    rollback)
        [ -L "$CONF/dbc.previous" ] || die "no previous set to roll back to"
        switch "$(readlink "$CONF/dbc.previous")"
        ;;
    *) die "unknown command $1 (install, rollback)" ;;
esac

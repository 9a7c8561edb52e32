#!/bin/sh
# Install the edgemon agent on a gateway (Raspberry Pi OS / Debian), the one documented way
# (docs/raspberry-pi.md, "Install"). Run as root:
#
#   sudo scripts/install-gateway.sh                          # from this checkout (needs PyPI)
#   sudo ./install-gateway.sh --wheelhouse ./wheelhouse      # offline: wheels built elsewhere
#
# Steps, in this order (each one needs the previous):
#   1. a new venv /opt/edgemon/venv-<time> with the agent's dependencies only: from the lock
#      when there is one (requirements/agent.txt of --source, agent.txt in the wheelhouse:
#      --require-hashes, then edgemon --no-deps; --no-lock to skip it), else
#      'edgemon[agent]'; with --wheelhouse: --no-index --find-links, nothing from the network.
#      Then the link /opt/edgemon/venv switched to it (an upgrade: only once
#      `edgemon-agent check` accepts the configuration; --rollback switches back);
#   2. the system user and group `edgemon` (member of dialout): sysusers.d + systemd-sysusers;
#   3. /etc/edgemon (0750 root:edgemon), then in it: the DBC set shipped with the package in
#      dbc.d/shipped-<version>/ with the symlink dbc -> that set, agent.toml from the example
#      (0640 root:edgemon), can-can0.env (bitrate, listen-only on). Existing files are kept;
#   4. the units edgemon-agent.service and edgemon-can@.service in /etc/systemd/system, enabled
#      (not started: edit agent.toml first). /var/lib/edgemon is the unit's StateDirectory=;
#   5. `edgemon-agent check` of the installed DBC set.
#
# --root DIR installs into DIR instead of / (tests, image builds): nothing outside DIR is touched,
# no chown (the group edgemon of DIR is not the host's), systemctl/systemd-sysusers get --root.
# A venv is not relocatable: under --root it only runs from DIR/opt/edgemon/venv.
set -eu

ROOT=/
SOURCE=
WHEELHOUSE=
PYTHON=python3
CAN_IF=can0
BITRATE=500000
ENABLE=yes
PIP_ARGS=
ROLLBACK=no
USE_LOCK=yes

usage() {
    cat <<'EOF'
usage: install-gateway.sh [--root DIR] [--source PATH | --wheelhouse DIR] [--python PY]
                          [--can IFACE] [--bitrate N] [--no-enable] [--no-lock]
                          [--pip-arg ARG]...
       install-gateway.sh [--root DIR] --rollback   # back to the previous venv
EOF
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT=$2; shift 2 ;;
        --source) SOURCE=$2; shift 2 ;;
        --wheelhouse) WHEELHOUSE=$2; shift 2 ;;
        --python) PYTHON=$2; shift 2 ;;
        --can) CAN_IF=$2; shift 2 ;;
        --bitrate) BITRATE=$2; shift 2 ;;
        --no-enable) ENABLE=no; shift ;;
        --pip-arg) PIP_ARGS="$PIP_ARGS $2"; shift 2 ;;
        --rollback) ROLLBACK=yes; shift ;;
        --no-lock) USE_LOCK=no; shift ;;
        -h|--help) usage ;;
        *) echo "install-gateway: unknown option $1" >&2; usage ;;
    esac
done

say() { echo "install-gateway: $*"; }
die() { echo "install-gateway: $*" >&2; exit 1; }

ROOT=$(cd "$ROOT" && pwd) || die "no such root directory"
[ "$ROOT" = / ] && R= || R=$ROOT
if [ -z "$R" ] && [ "$(id -u)" != 0 ]; then
    die "run as root (or give --root DIR)"
fi
VENV=/opt/edgemon/venv
CONF=/etc/edgemon
if [ "$ROLLBACK" = yes ]; then
    [ -L "$R$VENV.previous" ] || die "no previous venv to roll back to"
    BACK=$(readlink "$R$VENV.previous")
    CURRENT=$(readlink "$R$VENV")
    ln -sfn "$BACK" "$R$VENV.new" && mv -T "$R$VENV.new" "$R$VENV"
    ln -sfn "$CURRENT" "$R$VENV.previous"
    say "$VENV -> $BACK (was $CURRENT); now: systemctl restart edgemon-agent"
    exit 0
fi
if [ -z "$SOURCE" ] && [ -z "$WHEELHOUSE" ]; then
    SOURCE=$(cd "$(dirname "$0")/.." && pwd)
    [ -f "$SOURCE/pyproject.toml" ] || die "give --source PATH or --wheelhouse DIR"
fi

# chown only on the real system: the root's edgemon group is not the host's
owner() {
    if [ -z "$R" ]; then chown "$@"; fi
}

# -- 1. the venv, the agent's dependencies only ------------------------------------------------
# Each install or upgrade gets its own venv, /opt/edgemon/venv-<UTC time>; /opt/edgemon/venv is a
# symlink to the one in use (the unit runs $VENV/bin/edgemon-agent), venv.previous to the one
# before. An upgrade switches only after `edgemon-agent check` passed with the new venv.
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
NEW=$VENV-$STAMP
[ ! -e "$R$NEW" ] || NEW=$NEW-$$
say "1/5 venv $NEW"
[ ! -e "$R$VENV" ] || [ -L "$R$VENV" ] || die "$VENV is a directory, not a link: move it away"
mkdir -p "$R/opt/edgemon"
"$PYTHON" -m venv "$R$NEW"
PIP="$R$NEW/bin/python -m pip install --quiet"
if [ -n "$WHEELHOUSE" ]; then
    PIP="$PIP --no-index --find-links $WHEELHOUSE"
    LOCK=$WHEELHOUSE/agent.txt
    WHAT=edgemon
else
    LOCK=$SOURCE/requirements/agent.txt
    WHAT=$SOURCE
fi
# shellcheck disable=SC2086 # PIP and PIP_ARGS are lists of words
if [ "$USE_LOCK" = yes ] && [ -f "$LOCK" ]; then
    say "dependencies from the lock $LOCK (hash-checked), then edgemon without dependencies"
    $PIP --require-hashes -r "$LOCK" $PIP_ARGS
    $PIP --no-deps $PIP_ARGS "$WHAT"
else
    $PIP $PIP_ARGS "$WHAT[agent]"
fi
SHARE=$R$NEW/share/edgemon
[ -d "$SHARE/dbc" ] || die "$SHARE/dbc missing: the package was built without its data files"
VERSION=$("$R$NEW/bin/edgemon-agent" --version | sed 's/^edgemon-agent //')
if [ -L "$R$VENV" ] && [ -z "$R" ] && [ -e "$CONF/agent.toml" ]; then
    if ! "$NEW/bin/edgemon-agent" check --config "$CONF/agent.toml"; then
        die "the new venv $NEW does not accept $CONF/agent.toml: kept $(readlink "$VENV")"
    fi
fi
switch_link() {  # link target: atomic replace, the old target kept as link.previous
    if [ -L "$1" ]; then
        ln -sfn "$(readlink "$1")" "$1.previous"
    fi
    ln -sfn "$2" "$1.new"
    mv -T "$1.new" "$1"
}
switch_link "$R$VENV" "$(basename "$NEW")"
say "$VENV -> $(basename "$NEW") (edgemon $VERSION)"

# -- 2. the system user ------------------------------------------------------------------------
say "2/5 system user edgemon"
install -D -m 0644 "$SHARE/systemd/edgemon-sysusers.conf" "$R/usr/lib/sysusers.d/edgemon.conf"
if [ -n "$R" ]; then
    mkdir -p "$R/etc"
    systemd-sysusers --root="$R" "$R/usr/lib/sysusers.d/edgemon.conf"
else
    systemd-sysusers /usr/lib/sysusers.d/edgemon.conf
fi

# -- 3. configuration: the directory first, then what goes in it -------------------------------
say "3/5 configuration in $CONF"
install -d -m 0750 "$R$CONF"
owner root:edgemon "$R$CONF"
SET=dbc.d/shipped-$VERSION
if [ ! -d "$R$CONF/$SET" ]; then
    install -d -m 0750 "$R$CONF/dbc.d" "$R$CONF/$SET"
    install -m 0640 "$SHARE"/dbc/* "$R$CONF/$SET/"
    owner -R root:edgemon "$R$CONF/dbc.d"
fi
if [ ! -e "$R$CONF/dbc" ]; then
    ln -s "$SET" "$R$CONF/dbc"  # relative: the same link under --root and on the gateway
else
    say "kept $CONF/dbc -> $(readlink "$R$CONF/dbc" || echo '(a directory)')"
fi
keep_or_install() {  # source, destination: never overwrite what the user edited
    if [ -e "$R$2" ]; then
        say "kept $2"
    else
        install -m 0640 "$1" "$R$2"
        owner root:edgemon "$R$2"
    fi
}
keep_or_install "$SHARE/agent.example.toml" "$CONF/agent.toml"
ENV_TMP=$(mktemp)
trap 'rm -f "$ENV_TMP"' EXIT
printf '%s\n' "# edgemon-can@$CAN_IF.service" "BITRATE=$BITRATE" \
    "# on: the controller never acknowledges nor sends (a gateway that only listens)" \
    "LISTEN_ONLY=on" >"$ENV_TMP"
keep_or_install "$ENV_TMP" "$CONF/can-$CAN_IF.env"

# -- 4. units ----------------------------------------------------------------------------------
say "4/5 systemd units"
for unit in edgemon-agent.service edgemon-can@.service; do
    install -D -m 0644 "$SHARE/systemd/$unit" "$R/etc/systemd/system/$unit"
done
if [ "$ENABLE" = yes ]; then
    if [ -n "$R" ]; then
        systemctl --root="$R" enable edgemon-agent.service "edgemon-can@$CAN_IF.service"
    else
        systemctl daemon-reload
        systemctl enable edgemon-agent.service "edgemon-can@$CAN_IF.service"
    fi
fi

# -- 5. check ----------------------------------------------------------------------------------
say "5/5 check of the DBC set $CONF/$SET"
"$R$VENV/bin/edgemon-agent" check --dbc "$R$CONF/dbc/demo_vehicle.dbc" \
    --map "$R$CONF/dbc/demo_vehicle.map.toml"
say "done: edit $CONF/agent.toml (vin, [[can]], [gps], [mqtt]), add the TLS files, then"
say "  $VENV/bin/edgemon-agent check --config $CONF/agent.toml && systemctl start edgemon-agent"

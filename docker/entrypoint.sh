#!/bin/sh
# Container entrypoint: run the command as the host user given by USER_ID and GROUP_ID (docker run -e
# USER_ID="$(id -u)" -e GROUP_ID="$(id -g)", as docker/train.sh does), so that what it writes into mounted folders --
# run folders, checkpoints, exported models -- belongs to that user on the host, not to root. A user and a group
# with those ids are created when the image has none (any ids work), and reused when it has. Without USER_ID, or
# when the container already runs as a non-root user (docker run --user), the command runs unchanged.
set -eu

if [ -z "${USER_ID:-}" ] || [ "$(id -u)" != 0 ]; then
    exec "$@"
fi
GROUP_ID=${GROUP_ID:-$USER_ID}

# A free name for a new user or group: ocrforge, or ocrforge<id> when the image has an ocrforge already.
free_name() {  # free_name passwd|group ID
    if getent "$1" ocrforge > /dev/null; then
        echo "ocrforge$2"
    else
        echo ocrforge
    fi
}

group=$(getent group "$GROUP_ID" | cut -d: -f1)
if [ -z "$group" ]; then
    group=$(free_name group "$GROUP_ID")
    groupadd --gid "$GROUP_ID" "$group"
fi
user=$(getent passwd "$USER_ID" | cut -d: -f1)
if [ -z "$user" ]; then
    user=$(free_name passwd "$USER_ID")
    # --no-log-init: with a large id, lastlog/faillog would grow to gigabytes of sparse file in the image layer.
    useradd --uid "$USER_ID" --gid "$GROUP_ID" --no-log-init --no-create-home --home-dir "/home/$user" \
        --shell /bin/bash "$user"
    # A home of its own: torch, matplotlib and pip keep their caches under $HOME.
    mkdir -p "/home/$user"
    chown "$USER_ID:$GROUP_ID" "/home/$user"
fi
HOME=$(getent passwd "$user" | cut -d: -f6)
USER=$user
LOGNAME=$user
export HOME USER LOGNAME

if command -v gosu > /dev/null; then
    exec gosu "$USER_ID:$GROUP_ID" "$@"
fi
exec setpriv --reuid="$USER_ID" --regid="$GROUP_ID" --init-groups "$@"

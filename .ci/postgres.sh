#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests: a temporary folder, a Unix socket, no TCP.
#
#   .ci/postgres.sh run CMD [ARG...]   start a cluster, run CMD with ICSSI_TEST_DATABASE_URL set,
#                                      stop and remove the cluster (even when CMD fails)
#   .ci/postgres.sh start              start one; print its folder (give it to `stop`)
#   .ci/postgres.sh url DIR            the URL of the cluster in DIR
#   .ci/postgres.sh stop DIR           stop the cluster in DIR and remove DIR
#
# PostgreSQL is installed from Debian's packages when its binaries are missing. initdb refuses
# to run as root, so as root the cluster belongs to the `postgres` user (or `nobody`).
set -euo pipefail

log() { echo "postgres.sh: $*" >&2; }

# The folder of initdb and pg_ctl: on PATH, or the newest under /usr/lib/postgresql.
bindir() {
    if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
        dirname "$(command -v initdb)"
        return
    fi
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -n "$dir" && -x "$dir/initdb" ]]; then
        echo "$dir"
    fi
}

install_postgres() {
    log "PostgreSQL is missing: installing it from Debian's packages"
    local sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    # No default cluster: this script makes its own, and nothing should listen on 5432.
    "${sudo[@]}" mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false" \
        | "${sudo[@]}" tee /etc/postgresql-common/createcluster.d/icssi-ci.conf >/dev/null
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends postgresql >/dev/null
}

# Run a command as the cluster's owner (ourselves, or an unprivileged user when we are root),
# from /, a folder that user may enter.
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        (cd / && runuser -u "$OWNER" -- "$@")
    else
        (cd / && "$@")
    fi
}

owner() {
    if [[ $(id -u) -ne 0 ]]; then
        id -un
    elif id postgres >/dev/null 2>&1; then
        echo postgres
    else
        echo nobody
    fi
}

url() {
    echo "postgresql://postgres@/postgres?host=$1"
}

start() {
    local bin
    bin=$(bindir)
    if [[ -z "$bin" ]]; then
        install_postgres
        bin=$(bindir)
        [[ -n "$bin" ]] || { log "no initdb after installing PostgreSQL"; exit 1; }
    fi
    OWNER=$(owner)
    local dir
    # /tmp: a folder the owner can reach, and a short path (a socket path has a length limit).
    dir=$(mktemp -d /tmp/icssi-pg.XXXXXX)
    chmod 755 "$dir"
    [[ $(id -u) -ne 0 ]] || chown "$OWNER" "$dir"
    as_owner "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
        --no-sync >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; rm -rf "$dir"; exit 1; }
    # Durability is not wanted for a cluster thrown away after the tests: no fsync, faster.
    if ! as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start -o \
        "-c listen_addresses='' -k $dir -c fsync=off -c synchronous_commit=off \
         -c full_page_writes=off -c max_connections=300" >/dev/null; then
        cat "$dir/server.log" >&2 || true
        rm -rf "$dir"
        exit 1
    fi
    echo "$bin" >"$dir/bindir"
    echo "$dir"
}

stop() {
    local dir=$1
    [[ -d "$dir/data" ]] || { log "no cluster in $dir"; return 0; }
    OWNER=$(owner)
    local bin
    bin=$(cat "$dir/bindir" 2>/dev/null || bindir)
    as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}

case "${1:-}" in
    start)
        start
        ;;
    url)
        url "${2:?the cluster folder}"
        ;;
    stop)
        stop "${2:?the cluster folder}"
        ;;
    run)
        shift
        [[ $# -gt 0 ]] || { log "run: which command?"; exit 2; }
        cluster=$(start)
        trap 'stop "$cluster"' EXIT
        trap 'exit 130' INT TERM
        log "PostgreSQL at $cluster"
        ICSSI_TEST_DATABASE_URL=$(url "$cluster") "$@"
        ;;
    *)
        sed -n '3,9p' "$0" | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac

# Entrypoint of every node of a drr compose stack. It works with the official
# `postgres` image and with a plain Debian root filesystem that has the
# `postgresql-NN` package: it uses neither image's entrypoint, only the
# server binaries, and runs as the `postgres` user.
#
# On the first start it creates the data directory: the primary runs initdb
# and the bootstrap SQL, a replica takes a base backup of the primary through
# its own physical replication slot. Both build into a temporary directory
# that is moved into place only when complete, so a failed start never leaves
# a half-made PGDATA. Then it runs the server in the foreground.
#
# Node facts come from the compose file's environment: DRR_NODE,
# DRR_NODE_ROLE (primary or replica), DRR_PG_BINDIR, DRR_PORT, PGDATA; on the
# primary DRR_SUPERUSER_PASSWORD and DRR_REPLICATION_PASSWORD (read by the
# bootstrap SQL); on a replica DRR_PRIMARY_HOST, DRR_PRIMARY_PORT,
# DRR_REPLICATION_ROLE and DRR_REPLICATION_PASSWORD.
set -eu
umask 077

bin="${DRR_PG_BINDIR:?}"
conf=/etc/drr/node
tmp="${PGDATA:?}.drr-tmp"
node="${DRR_NODE:?}"

log() {
    printf 'drr-entrypoint[%s]: %s\n' "$node" "$*" >&2
}

init_primary() {
    : "${DRR_SUPERUSER_PASSWORD:?}" "${DRR_REPLICATION_PASSWORD:?}"
    log "initializing a new cluster in $PGDATA"
    pwfile=$(mktemp)
    trap 'rm -f "$pwfile"' EXIT
    printf '%s\n' "$DRR_SUPERUSER_PASSWORD" >"$pwfile"
    # The native backend's initdb arguments (render::postgres::INITDB_ARGS).
    "$bin/initdb" -D "$tmp" --pwfile="$pwfile" @INITDB_ARGS@
    rm -f "$pwfile"
    trap - EXIT
    log "running $conf/bootstrap.sql on a server listening on a unix socket only"
    "$bin/pg_ctl" -D "$tmp" -w -t 120 -o "-c config_file=$conf/postgresql.conf \
-c hba_file=$conf/pg_hba.conf -c listen_addresses= -c unix_socket_directories=/tmp" start
    "$bin/psql" -X -v ON_ERROR_STOP=1 -h /tmp -p "${DRR_PORT:?}" -U postgres \
        -d postgres -f "$conf/bootstrap.sql"
    "$bin/pg_ctl" -D "$tmp" -w -t 120 -m fast stop
}

init_replica() {
    : "${DRR_PRIMARY_HOST:?}" "${DRR_PRIMARY_PORT:?}" "${DRR_REPLICATION_ROLE:?}"
    PGPASSWORD="${DRR_REPLICATION_PASSWORD:?}"
    export PGPASSWORD
    if "$bin/pg_receivewal" -h "$DRR_PRIMARY_HOST" -p "$DRR_PRIMARY_PORT" \
        -U "$DRR_REPLICATION_ROLE" -w --slot="$node" --drop-slot 2>/dev/null; then
        log "dropped the stale replication slot $node on $DRR_PRIMARY_HOST"
    fi
    log "taking a base backup of $DRR_PRIMARY_HOST:$DRR_PRIMARY_PORT through slot $node"
    "$bin/pg_basebackup" -h "$DRR_PRIMARY_HOST" -p "$DRR_PRIMARY_PORT" \
        -U "$DRR_REPLICATION_ROLE" -w -D "$tmp" -R -C -S "$node" -X stream \
        --checkpoint=fast
    unset PGPASSWORD
}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    rm -rf "$tmp"
    case "${DRR_NODE_ROLE:?}" in
    primary) init_primary ;;
    replica) init_replica ;;
    *)
        log "unknown DRR_NODE_ROLE '$DRR_NODE_ROLE'; expected primary or replica"
        exit 1
        ;;
    esac
    rm -rf "$PGDATA"
    mv "$tmp" "$PGDATA"
    log "created $PGDATA"
fi

exec "$bin/postgres" -D "$PGDATA" -c config_file="$conf/postgresql.conf" \
    -c hba_file="$conf/pg_hba.conf" -c 'listen_addresses=*'

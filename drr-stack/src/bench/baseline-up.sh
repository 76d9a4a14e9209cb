#!/usr/bin/env bash
# Benchmark baseline: a primary and one delayed replica started the way a
# team would script it by hand with pg_ctl and pg_basebackup. Run by
# `cargo xtask bench`, never by the stack itself.
# Usage: baseline-up.sh BINDIR DIR PRIMARY_PORT REPLICA_PORT
set -euo pipefail
bin=$1 dir=$2 primary_port=$3 replica_port=$4
export PGPASSWORD=secret
echo "$PGPASSWORD" > "$dir/pwfile"
"$bin/initdb" -D "$dir/primary" -U postgres --pwfile="$dir/pwfile" -A scram-sha-256 --no-sync >/dev/null
cat >> "$dir/primary/postgresql.conf" <<CONF
port = $primary_port
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
CONF
"$bin/pg_ctl" -D "$dir/primary" -l "$dir/primary.log" -w start >/dev/null
psql=("$bin/psql" -X -q -h 127.0.0.1 -p "$primary_port" -U postgres -d postgres)
"${psql[@]}" -c "CREATE ROLE app LOGIN CREATEDB PASSWORD 'pass'"
"${psql[@]}" -c "CREATE DATABASE app OWNER app"
"$bin/pg_basebackup" -h 127.0.0.1 -p "$primary_port" -U postgres -D "$dir/replica" -R -C -S replica1 -X stream --checkpoint=fast
cat >> "$dir/replica/postgresql.conf" <<CONF
port = $replica_port
recovery_min_apply_delay = '3000ms'
CONF
"$bin/pg_ctl" -D "$dir/replica" -l "$dir/replica.log" -w start >/dev/null

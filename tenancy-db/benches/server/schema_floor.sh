#!/bin/bash
# PostgreSQL's own cost of schema-per-tenant at density, with no tenancy code and no role
# memberships: pgbench as a superuser, 64 clients, tenants chosen Zipf(1.1) among 10,000,
# `SET LOCAL ROLE` to the tenant's role and the density benchmark's `SELECT` (which finds
# the tenant's schema through `$user`), against the same `SELECT` on one plain table.
# Both sides send every statement unprepared, so both plan every query.
#
#   tenancy-db/benches/server/schema_floor.sh [rounds] [seconds]
#
# Needs the density_shared benchmark's deployment (run it first): `tshared__shared` with
# schema tenants `s00000` to `s09999`, and `tshared_plain`.
set -euo pipefail
ROUNDS=${1:-2}
SECONDS_PER_SIDE=${2:-15}
HOST=${PGHOST:-127.0.0.1}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# The same tenant choice (and the same extra round trip) on both sides.
choose='\set r random_zipfian(0, 9999, 1.1)
SELECT '"'"'tshared_s'"'"' || lpad(:r::text, 5, '"'"'0'"'"') AS role \gset'
printf '%s\nBEGIN;\nSET LOCAL ROLE :role;\nSELECT title FROM records WHERE id = 1;\nCOMMIT;\n' \
    "$choose" >"$dir/schema.sql"
printf '%s\nBEGIN;\nSELECT title FROM records WHERE id = :r + 1;\nCOMMIT;\n' \
    "$choose" >"$dir/plain.sql"
run() {
    pgbench -h "$HOST" -U postgres -n -c 64 -j 2 -T "$SECONDS_PER_SIDE" -f "$dir/$1.sql" "$2" \
        2>&1 | sed -n 's/^tps = \([0-9.]*\).*/\1/p'
}
for round in $(seq "$ROUNDS"); do
    plain=$(run plain tshared_plain)
    schema=$(run schema tshared__shared)
    echo "round $round: one plain table $plain tps, 10,000 schemas $schema tps," \
        "ratio $(echo "scale=2; $schema / $plain" | bc)"
done

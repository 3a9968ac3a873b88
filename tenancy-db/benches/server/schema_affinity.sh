#!/bin/bash
# How much of schema-per-tenant's cost at density is each session serving many schemas,
# and what pinning tenants to sessions would win back. PostgreSQL alone, no tenancy code:
# pgbench as a superuser in a scratch database of 10,000 schemas (one `records` table of
# one row each) and one plain table, 64 clients, tenants Zipf(1.1), the tenant bound by
# `set_config('search_path', ..)` inside the transaction. Every side prepares its
# statements once per session (explicit PREPARE/EXECUTE):
#
#   plain         the plain table, no tenancy
#   any           any session serves any of the 10,000 schemas (what a shared pool does)
#   affine        each session serves its own 1/64 of the schemas (156), Zipf within them
#   affine+plans  as affine, with a prepared statement per schema, so PostgreSQL never
#                 re-plans for a changed search path
#   affine+plans+role  as affine+plans, binding the tenant as tenancy-db does: each schema
#                 has a role of the same name, and `set_config('role', ..)` (`SET LOCAL
#                 ROLE`) finds the schema through the default search path `"$user", public`
#   any+role      any session serves any schema, bound as tenancy-db does (its design today)
#   any+plans+role  as any+role, with a prepared statement per schema for the 256 most
#                 frequent schemas in every session (71% of the traffic), one shared
#                 statement for the rest: a bounded statement cache per tenant, no affinity
#
#   tenancy-db/benches/server/schema_affinity.sh [seconds per side] [sides]
#
# Each side pays its session's preparing inside its time, so use long sides (default 60 s).
# Makes and drops the database `tenancy_schema_affinity`.
set -euo pipefail
SECONDS_PER_SIDE=${1:-60}
SIDES=${2:-any affine affine+plans affine+plans+role any+role any+plans+role}
HOST=${PGHOST:-127.0.0.1}
DB=tenancy_schema_affinity
CLIENTS=64
PER_CLIENT=$((10000 / CLIENTS))
export PGOPTIONS='-c client_min_messages=warning'
psql=(psql -h "$HOST" -U postgres -q -v ON_ERROR_STOP=1)
dir=$(mktemp -d)
drop_roles() {
    for thousand in $(seq 0 9); do
        "${psql[@]}" -c "DO \$\$ BEGIN
            FOR i IN ${thousand}000..${thousand}999 LOOP
                EXECUTE format('DROP ROLE IF EXISTS s%s', lpad(i::text, 5, '0'));
            END LOOP; END \$\$;" >/dev/null
    done
}
cleanup() {
    rm -rf "$dir"
    "${psql[@]}" -c "DROP DATABASE IF EXISTS $DB" >/dev/null
    drop_roles
}
trap cleanup EXIT
"${psql[@]}" -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
drop_roles
"${psql[@]}" -d "$DB" -c "CREATE TABLE records (id int PRIMARY KEY, title text);
    INSERT INTO records SELECT g, 'title ' || g FROM generate_series(1, 10000) g;"
echo "making 10,000 schemas..."
for thousand in $(seq 0 9); do
    # In batches: one transaction cannot hold locks on 10,000 new tables.
    "${psql[@]}" -d "$DB" -c "DO \$\$ BEGIN
        FOR i IN ${thousand}000..${thousand}999 LOOP
            EXECUTE format('CREATE ROLE s%1\$s; CREATE SCHEMA s%1\$s AUTHORIZATION s%1\$s;
                CREATE TABLE s%1\$s.records (id int PRIMARY KEY, title text);
                INSERT INTO s%1\$s.records VALUES (1, ''t'');
                ALTER TABLE s%1\$s.records OWNER TO s%1\$s', lpad(i::text, 5, '0'));
        END LOOP; END \$\$;"
done

cat >"$dir/plain.sql" <<'SQL'
\if :prepared = 0
PREPARE q AS SELECT title FROM records WHERE id = $1;
\set prepared 1
\endif
\set r random_zipfian(0, 9999, 1.1)
BEGIN;
SELECT set_config('search_path', 'public', true);
EXECUTE q(:r + 1);
COMMIT;
SQL
# The tenant's schema name is made by the server, as the plain side's filter value is.
bind='SELECT set_config('"'"'search_path'"'"', '"'"'s'"'"' || lpad(:r::text, 5, '"'"'0'"'"'), true);'
as_role='SELECT set_config('"'"'role'"'"', '"'"'s'"'"' || lpad(:r::text, 5, '"'"'0'"'"'), true);'
any_tenant='\set r random_zipfian(0, 9999, 1.1)'
affine_tenant="\\set r random_zipfian(0, $((PER_CLIENT - 1)), 1.1) * $CLIENTS + :client_id"

# A session's first transaction prepares one statement, `q`, shared by every tenant.
one_statement() {
    printf '\\if :prepared = 0\nPREPARE q AS SELECT title FROM records WHERE id = 1;\n\\set prepared 1\n\\endif\n'
}
# A session's first transaction prepares `q<tenant>` for each of its tenants, with the
# binding $1 made for the session (not the transaction) while it is prepared; $2 undoes it.
statement_per_affine_tenant() {
    printf '\\if :prepared = 0\n'
    for k in $(seq 0 $((PER_CLIENT - 1))); do
        printf '\\set r %d * %d + :client_id\n%s\nPREPARE q:r AS SELECT title FROM records WHERE id = 1;\n' \
            "$k" "$CLIENTS" "${1/true/false}"
    done
    printf '%s\n\\set prepared 1\n\\endif\n' "$2"
}
# The tenant chosen by $1, bound by $2, then the statement $3.
transaction() {
    printf '%s\nBEGIN;\n%s\nEXECUTE %s;\nCOMMIT;\n' "$1" "$2" "$3"
}

{ one_statement; transaction "$any_tenant" "$bind" q; } >"$dir/any.sql"
{ one_statement; transaction "$affine_tenant" "$bind" q; } >"$dir/affine.sql"
{
    statement_per_affine_tenant "$bind" 'RESET search_path;'
    transaction "$affine_tenant" "$bind" 'q:r'
} >"$dir/affine+plans.sql"
{
    statement_per_affine_tenant "$as_role" 'RESET ROLE;'
    transaction "$affine_tenant" "$as_role" 'q:r'
} >"$dir/affine+plans+role.sql"
{ one_statement; transaction "$any_tenant" "$as_role" q; } >"$dir/any+role.sql"
{
    # Statements of their own for the 256 most frequent tenants, `q` for the rest.
    printf '\\if :prepared = 0\n'
    for k in $(seq 0 255); do
        printf '\\set r %d\n%s\nPREPARE q:r AS SELECT title FROM records WHERE id = 1;\n' \
            "$k" "${as_role/true/false}"
    done
    printf 'RESET ROLE;\nPREPARE q AS SELECT title FROM records WHERE id = 1;\n'
    printf '\\set prepared 1\n\\endif\n'
    printf '%s\nBEGIN;\n%s\n' "$any_tenant" "$as_role"
    printf '\\if :r < 256\nEXECUTE q:r;\n\\else\nEXECUTE q;\n\\endif\nCOMMIT;\n'
} >"$dir/any+plans+role.sql"

run() {
    pgbench -h "$HOST" -U postgres -n -D prepared=0 -c "$CLIENTS" -j 2 -T "$SECONDS_PER_SIDE" \
        -f "$dir/$1.sql" "$DB" 2>&1 | sed -n 's/^tps = \([0-9.]*\).*/\1/p'
}
plain=$(run plain)
echo "plain          $plain tps"
for side in $SIDES; do
    tps=$(run "$side")
    printf '%-14s %s tps, %s of plain\n' "$side" "$tps" "$(echo "scale=2; $tps / $plain" | bc)"
done

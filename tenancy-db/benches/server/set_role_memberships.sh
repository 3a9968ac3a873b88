#!/bin/bash
# What `SET ROLE` costs as a role with many memberships: the first in a session, later ones,
# and the first after a GRANT or REVOKE between two unrelated roles from another session.
# No tenancy code runs; this measures PostgreSQL alone.
#
#   tenancy-db/benches/server/set_role_memberships.sh [role] [tenant-role] [database]
#
# Defaults fit the density_shared benchmark's deployment (run it first): the application
# role `tshared__app`, the tenant role `tshared_s00001`, the database `tshared__shared`.
# The role logs in without a password (the test server's loopback trust authentication).
set -euo pipefail
ROLE=${1:-tshared__app}
TENANT=${2:-tshared_s00001}
DB=${3:-tshared__shared}
HOST=${PGHOST:-127.0.0.1}
admin() { psql -h "$HOST" -U postgres -d "$DB" -qAt -c "$1"; }

admin "SELECT '$ROLE belongs to ' || count(*) || ' roles' FROM pg_auth_members m
       JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = '$ROLE'"
admin "DROP ROLE IF EXISTS tbench_inval_a; DROP ROLE IF EXISTS tbench_inval_b;
       CREATE ROLE tbench_inval_a; CREATE ROLE tbench_inval_b" 2>/dev/null
trap 'admin "DROP ROLE IF EXISTS tbench_inval_a; DROP ROLE IF EXISTS tbench_inval_b" 2>/dev/null' EXIT

coproc SESSION { psql -h "$HOST" -U "$ROLE" -d "$DB" -qAt 2>&1; }
# Times one `SET LOCAL ROLE` in the session and prints it with a label.
time_set_role() {
    printf '%s\n' "BEGIN;" "\\timing on" "SET LOCAL ROLE \"$TENANT\";" "\\timing off" \
        "COMMIT;" "SELECT 'done';" >&"${SESSION[1]}"
    while read -r line <&"${SESSION[0]}"; do
        case "$line" in
            done) break ;;
            Time*) printf '  %-32s %s\n' "$1" "${line#Time: }" ;;
        esac
    done
}
time_set_role "first SET ROLE of the session"
for _ in 1 2 3; do time_set_role "later"; done
admin "GRANT tbench_inval_a TO tbench_inval_b"
time_set_role "first after a GRANT elsewhere"
time_set_role "later"
admin "REVOKE tbench_inval_a FROM tbench_inval_b"
time_set_role "first after a REVOKE elsewhere"
echo "\\q" >&"${SESSION[1]}"

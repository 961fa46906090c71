#!/usr/bin/env bash
# Provides the real PostgreSQL server the services and tests use, without Docker.
#
#   scripts/postgres.sh up     make a server reachable and create the role and databases
#   scripts/postgres.sh down   stop the server, but only if this script started it
#
# - DATABASE_URL set: the user runs their own server; nothing is started or created.
# - as root: Debian's `postgresql` package (installed when missing) and its first cluster,
#   started with pg_ctlcluster (there is no systemd here).
# - as another user: a private cluster under .infra/postgres made with initdb.
# Then the role `closeloop` (password `closeloop`, local use only) and the databases `closeloop`
# (make run) and `closeloop_test` (make test) are created if missing. Idempotent.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
state=${CLOSELOOP_INFRA_DIR:-$root/.infra}/postgres
port=${PGPORT:-5432}
role=closeloop
databases=(closeloop closeloop_test)

say() { echo "[postgres] $*"; }

if [[ -n ${DATABASE_URL:-} ]]; then
  say "DATABASE_URL is set: using that server"
  exit 0
fi

mkdir -p "$state"

debian_cluster() { pg_lsclusters --no-header 2>/dev/null | awk -v p="$port" '$3 == p {print $1, $2, $4; exit}'; }

psql_admin() {
  if [[ $(id -u) == 0 ]]; then
    su postgres -c "psql -X -q -v ON_ERROR_STOP=1 -p $port $*"
  else
    psql -X -q -v ON_ERROR_STOP=1 -h "$state" -p "$port" -U postgres "$@"
  fi
}

wait_ready() {
  local deadline=$((SECONDS + 60))
  until pg_isready -q -h 127.0.0.1 -p "$port"; do
    ((SECONDS > deadline)) && { say "server did not accept connections in 60 s"; exit 1; }
    sleep 0.3
  done
}

up_root() {
  if ! command -v pg_lsclusters >/dev/null || [[ -z $(pg_lsclusters --no-header 2>/dev/null) ]]; then
    say "installing Debian's postgresql package"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  local version name status
  read -r version name status <<<"$(debian_cluster)"
  [[ -n ${version:-} ]] || { say "no Debian cluster listens on port $port (pg_lsclusters)"; exit 1; }
  if [[ $status != online* ]]; then
    say "starting cluster $version/$name on port $port"
    pg_ctlcluster --skip-systemctl-redirect "$version" "$name" start
    echo "$version $name" >"$state/started-cluster"
  fi
}

up_user() {
  local bindir
  bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [[ -n $bindir ]] || { say "PostgreSQL binaries not found; install postgresql or set DATABASE_URL"; exit 1; }
  if [[ ! -f $state/data/PG_VERSION ]]; then
    say "initialising a private cluster in $state/data"
    "$bindir/initdb" -D "$state/data" -U postgres --auth=trust >/dev/null
  fi
  if ! "$bindir/pg_ctl" -D "$state/data" status >/dev/null 2>&1; then
    say "starting private cluster on port $port"
    "$bindir/pg_ctl" -D "$state/data" -l "$state/server.log" -w \
      -o "-p $port -k $state -c listen_addresses=127.0.0.1" start >/dev/null
    echo "private" >"$state/started-cluster"
  fi
}

up() {
  if [[ $(id -u) == 0 ]]; then up_root; else up_user; fi
  wait_ready
  psql_admin -d postgres <<SQL
SELECT 'CREATE ROLE $role LOGIN PASSWORD ''$role'''
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$role') \gexec
$(for db in "${databases[@]}"; do
    echo "SELECT 'CREATE DATABASE $db OWNER $role' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$db') \\gexec"
  done)
SQL
  say "ready on 127.0.0.1:$port (databases: ${databases[*]})"
}

down() {
  if [[ ! -f $state/started-cluster ]]; then
    say "not started by this project: left running"
    return 0
  fi
  local started
  started=$(cat "$state/started-cluster")
  if [[ $started == private ]]; then
    local bindir
    bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    if "$bindir/pg_ctl" -D "$state/data" status >/dev/null 2>&1; then
      "$bindir/pg_ctl" -D "$state/data" -m fast stop >/dev/null
    fi
  else
    # Exit code 2: the cluster is already stopped (a reboot, or someone else stopped it).
    # shellcheck disable=SC2086 # "version name"
    pg_ctlcluster --skip-systemctl-redirect $started stop || [[ $? == 2 ]]
  fi
  rm -f "$state/started-cluster"
  say "stopped"
}

case ${1:-} in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac

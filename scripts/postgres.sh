#!/usr/bin/env bash
# Provides the real PostgreSQL server the services and tests use, without Docker.
#
#   scripts/postgres.sh up     make a server reachable and create the role and databases
#   scripts/postgres.sh down   stop the server, but only if this script started it
#
# - DATABASE_URL set: the user runs their own server; nothing is started or created.
# - as root: Debian's `postgresql` package (installed when missing) and its first cluster,
#   started with pg_ctlcluster (there is no systemd here).
# - as another user: a private cluster under .infra/postgres made with initdb. Nothing is trusted:
#   over its Unix socket only the OS user running this script gets in, as the superuser
#   `postgres` (peer); over TCP every role needs its password (SCRAM).
# Then the role `closeloop` (password `closeloop`, local use only) and the databases `closeloop`
# (make run), `closeloop_test` (make test), `closeloop_bench` (make bench-ingest) and those of
# bench-scoring, bench-orchestrator, bench-notifier and soak are created if missing. Idempotent.
#
# Values never become shell or SQL code: other users' commands get them as arguments, SQL gets
# them as psql variables (:'name'), and the private server reads its settings from a file.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
state=${CLOSELOOP_INFRA_DIR:-$root/.infra}/postgres
port=${PGPORT:-5432}
role=closeloop
password=closeloop
databases=(closeloop closeloop_test closeloop_bench closeloop_bench_scoring closeloop_bench_scoring_baseline
  closeloop_bench_orchestrator closeloop_bench_notifier closeloop_soak)

say() { echo "[postgres] $*"; }

[[ $port =~ ^[0-9]{1,5}$ ]] || { say "PGPORT must be a port number, got: $port"; exit 2; }

if [[ -n ${DATABASE_URL:-} ]]; then
  say "DATABASE_URL is set: using that server"
  exit 0
fi

mkdir -p "$state"

debian_cluster() { pg_lsclusters --no-header 2>/dev/null | awk -v p="$port" '$3 == p {print $1, $2, $4; exit}'; }

psql_admin() {
  if [[ $(id -u) == 0 ]]; then
    runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$port" "$@"
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

# A string in a PostgreSQL configuration file: backslashes escaped, quotes doubled ('it''s').
conf_quote() {
  local value=${1//\\/\\\\}
  printf "'%s'" "${value//\'/\'\'}"
}

# Written on every `up`, so a cluster made by an older version of this script loses its `trust`.
write_private_config() {
  local data=$1
  cat >"$data/pg_hba.conf" <<'HBA'
# Written by scripts/postgres.sh on every `up`. No `trust`: over the Unix socket only the OS user
# mapped to `postgres` in pg_ident.conf (the one who runs the script) gets in; TCP needs a password.
# TYPE  DATABASE  USER      ADDRESS        METHOD
local   all       postgres                 peer map=owner
local   all       all                      scram-sha-256
host    all       all       127.0.0.1/32   scram-sha-256
host    all       all       ::1/128        scram-sha-256
HBA
  {
    echo "# Written by scripts/postgres.sh: the OS user who runs it is the superuser postgres."
    printf 'owner "%s" postgres\n' "$(id -un | sed 's/"/""/g')"
  } >"$data/pg_ident.conf"
  # Settings live in a file rather than in `pg_ctl -o`, which pg_ctl hands to a shell.
  {
    echo "# Written by scripts/postgres.sh on every \`up\`."
    echo "port = $port"
    echo "listen_addresses = '127.0.0.1'"
    echo "unix_socket_directories = $(conf_quote "$state")"
    echo "password_encryption = 'scram-sha-256'"
  } >"$data/closeloop.conf"
  grep -qx "include_if_exists = 'closeloop.conf'" "$data/postgresql.conf" \
    || echo "include_if_exists = 'closeloop.conf'" >>"$data/postgresql.conf"
}

up_user() {
  local bindir
  bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [[ -n $bindir ]] || { say "PostgreSQL binaries not found; install postgresql or set DATABASE_URL"; exit 1; }
  if [[ ! -f $state/data/PG_VERSION ]]; then
    say "initialising a private cluster in $state/data"
    "$bindir/initdb" -D "$state/data" -U postgres --auth-local=peer --auth-host=scram-sha-256 >/dev/null
  fi
  write_private_config "$state/data"
  if "$bindir/pg_ctl" -D "$state/data" status >/dev/null 2>&1; then
    "$bindir/pg_ctl" -D "$state/data" reload >/dev/null
  else
    say "starting private cluster on port $port"
    "$bindir/pg_ctl" -D "$state/data" -l "$state/server.log" -w start >/dev/null
    echo "private" >"$state/started-cluster"
  fi
}

up() {
  if [[ $(id -u) == 0 ]]; then up_root; else up_user; fi
  wait_ready
  psql_admin -d postgres -v role="$role" -v password="$password" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'role', :'password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
SQL
  local db
  for db in "${databases[@]}"; do
    psql_admin -d postgres -v role="$role" -v db="$db" <<'SQL'
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SQL
  done
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

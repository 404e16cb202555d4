#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers at DATABASE_URL (default: the local cluster at
# 127.0.0.1:5432, user postgres, trust authentication).
#   - DATABASE_URL set: only waits for it to answer; never touches the cluster.
#   - a local cluster installed but stopped: starts it.
#   - no PostgreSQL at all on Debian: installs it with apt-get and allows trust
#     authentication on loopback (a development and CI machine, not production).
set -euo pipefail

url="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}"

answers() { pg_isready -q -d "$url" >/dev/null 2>&1 || psql "$url" -qtAc 'select 1' >/dev/null 2>&1; }

wait_for() {
  for _ in $(seq 1 60); do answers && return 0; sleep 0.5; done
  echo "ensure-postgres: PostgreSQL at ${url%%\?*} does not answer after 30s" >&2
  return 1
}

if command -v psql >/dev/null 2>&1 && answers; then
  exit 0
fi
if [ -n "${DATABASE_URL:-}" ]; then
  echo "ensure-postgres: waiting for DATABASE_URL to answer"
  wait_for
  exit $?
fi

sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-postgres: no PostgreSQL found and no apt-get to install it; install PostgreSQL 15+ or set DATABASE_URL" >&2
    exit 1
  fi
  echo "ensure-postgres: installing PostgreSQL with apt-get"
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql postgresql-client >/dev/null
fi

version=$(ls /etc/postgresql | sort -V | tail -n 1)
if [ -z "$version" ]; then
  echo "ensure-postgres: PostgreSQL is installed but has no cluster; create one with pg_createcluster" >&2
  exit 1
fi
hba="/etc/postgresql/$version/main/pg_hba.conf"
if ! sudo_ grep -qE '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$hba"; then
  echo "ensure-postgres: allowing trust authentication on 127.0.0.1 in $hba (development machine)"
  sudo_ sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
fi
echo "ensure-postgres: starting PostgreSQL $version"
sudo_ pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || sudo_ pg_ctlcluster --skip-systemctl-redirect "$version" main reload 2>/dev/null || true
wait_for

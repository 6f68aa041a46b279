# Shared by bin/up and bin/test: a Python 3.11 virtualenv with requirements.txt (bin/up) or
# requirements-dev.txt (bin/test) installed, and the project's .env loaded. Sourced, not run.

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

find_python() {
  for candidate in "${PYTHON:-}" python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  return 1
}

ensure_venv() {  # [requirements file]: requirements.txt (bin/up) or requirements-dev.txt (bin/test)
  local req=${1:-requirements.txt} py stamp kind
  if [ ! -x .venv/bin/python ]; then
    py=$(find_python) || die "Python 3.11 is required (install python3.11, or set PYTHON=/path/to/python3.11)"
    say "creating .venv with $py"
    "$py" -m venv .venv
  fi
  # Reinstall only when the file (or requirements.txt, which requirements-dev.txt includes)
  # changed. One stamp per file, so running bin/test and bin/up in turn installs nothing twice.
  kind=${req%.txt}
  stamp=".venv/.$kind.$(cat requirements.txt "$req" | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    say "installing $req"
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -r "$req"
    rm -f ".venv/.$kind".*
    touch "$stamp"
  fi
  export PATH="$ROOT/.venv/bin:$PATH" VIRTUAL_ENV="$ROOT/.venv"
}

load_dotenv() {
  # Variables already in the environment win over .env.
  if [ -f .env ]; then
    local line key
    while IFS= read -r line || [ -n "$line" ]; do
      case "$line" in ''|'#'*) continue ;; esac
      key=${line%%=*}
      [ -n "${!key+x}" ] || export "$line"
    done < .env
  fi
}

tcp_open() {  # host port
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

redis_ping() {  # url; a sentinel:// URL pings the master the sentinels name (REDIS_SENTINEL_MASTER)
  python - "$1" <<'PY'
import os
import sys

from redis.backoff import NoBackoff
from redis.retry import Retry

from apps.core.redis import redis_client_for  # the platform's own reading of REDIS_URL

try:
    client = redis_client_for(
        sys.argv[1],
        master_name=os.environ.get("REDIS_SENTINEL_MASTER") or "mymaster",
        sentinel_password=os.environ.get("REDIS_SENTINEL_PASSWORD") or None,
        socket_connect_timeout=1,
        socket_timeout=2,
        retry=Retry(NoBackoff(), 0),  # the caller polls; each try answers at once
    )
    sys.exit(0 if client.ping() else 1)
except Exception:
    sys.exit(1)
PY
}

port_free() {  # host port: nothing listens there (bound with SO_REUSEADDR, as the servers bind)
  python - "$1" "$2" <<'PY'
import socket
import sys

family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
with socket.socket(family) as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((sys.argv[1], int(sys.argv[2])))
    except OSError:
        sys.exit(1)
PY
}

ensure_database() {  # url: create the PostgreSQL database it names when it does not exist
  python - "$1" <<'PY'
import sys

import psycopg
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

url = sys.argv[1]
name = conninfo_to_dict(url).get("dbname")
try:
    psycopg.connect(url, connect_timeout=5).close()
    sys.exit(0)
except psycopg.OperationalError as exc:
    if not name or "does not exist" not in str(exc):
        sys.exit(f"error: cannot connect to PostgreSQL (DATABASE_URL): {str(exc).strip()}")
# CREATE DATABASE from the maintenance database, as createdb does.
try:
    with psycopg.connect(make_conninfo(url, dbname="postgres"), autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
except errors.DuplicateDatabase:
    pass  # another process made it meanwhile
except psycopg.Error as exc:
    sys.exit(f"error: the database {name} does not exist and could not be created: {str(exc).strip()}")
print(f"created the PostgreSQL database {name}", file=sys.stderr)
PY
}

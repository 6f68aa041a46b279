# Shared by bin/up and bin/test: a Python 3.11 virtualenv with requirements.txt installed,
# and the project's .env loaded. Sourced, not run.

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

ensure_venv() {
  local py stamp
  if [ ! -x .venv/bin/python ]; then
    py=$(find_python) || die "Python 3.11 is required (install python3.11, or set PYTHON=/path/to/python3.11)"
    say "creating .venv with $py"
    "$py" -m venv .venv
  fi
  # Reinstall only when requirements.txt changed.
  stamp=".venv/.requirements-$(sha256sum requirements.txt | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    say "installing requirements.txt"
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -r requirements.txt
    rm -f .venv/.requirements-*
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

from apps.jobs.broker import redis_client_for  # the platform's own reading of REDIS_URL

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

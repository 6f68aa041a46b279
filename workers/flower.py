"""Start Flower for operators: always behind basic auth, on the same broker.

Flower reads its own FLOWER_* variables (FLOWER_BASIC_AUTH, FLOWER_PORT, FLOWER_ADDRESS,
FLOWER_URL_PREFIX). This wrapper refuses to start without credentials, so a missing variable
never serves the dashboard to anyone who asks. The credentials stay in the environment, which
Flower reads itself (flower/command.py, apply_env_options): on the command line they would
show in `ps` to every user of the machine, where /proc/<pid>/environ is readable only by
Flower's own user.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> None:
    auth = os.environ.get("FLOWER_BASIC_AUTH", "")
    if ":" not in auth:
        sys.exit(
            "FLOWER_BASIC_AUTH is not set (user:password[,user2:password2]); refusing to start Flower "
            "without authentication."
        )
    if any(a.startswith("--basic-auth") for a in argv):
        sys.exit("Give Flower's credentials in FLOWER_BASIC_AUTH, not as --basic-auth: a command line shows in `ps`.")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    # This interpreter's own celery, so a virtualenv works without being activated.
    args = [sys.executable, "-m", "celery", "-A", "config", "flower"]
    if "FLOWER_PORT" not in os.environ and not any(a.startswith("--port") for a in argv):
        args.append("--port=5555")
    if "FLOWER_ADDRESS" not in os.environ and not any(a.startswith("--address") for a in argv):
        # Flower serves /metrics and /healthcheck without auth; keep it on loopback unless
        # an operator chooses otherwise (and puts a proxy with auth in front).
        args.append("--address=127.0.0.1")
    if os.environ.get("FLOWER_URL_PREFIX"):
        args.append(f"--url-prefix={os.environ['FLOWER_URL_PREFIX']}")
    os.execv(sys.executable, args + argv)


if __name__ == "__main__":
    main(sys.argv[1:])

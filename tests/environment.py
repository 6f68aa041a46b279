"""Loaded as a pytest plugin (`-p tests.environment`) before pytest-django reads the
settings: the test process's own defaults for the environment it is configured from."""

import os

os.environ.setdefault("SECRET_KEY", "tests-only-secret-key-not-for-production")
os.environ.setdefault("DEBUG", "0")
# The crash kind kills its worker on purpose; only tests register it.
os.environ.setdefault("DIAGNOSTICS_UNSAFE", "1")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/jobplatform")
os.environ.setdefault("JOB_LEASE_SECONDS", "3")
os.environ.setdefault("JOB_RETRY_BASE_SECONDS", "0.5")
os.environ.setdefault("RECONCILE_INTERVAL_SECONDS", "0.5")
os.environ.setdefault("STRANDED_GRACE_SECONDS", "2")
os.environ.setdefault("STRANDED_CHECK_SECONDS", "0.5")
os.environ.setdefault("ALLOWED_HOSTS", "*")
os.environ.setdefault(
    "JOB_KIND_MODULES", "workers.kinds.diagnostics,workers.kinds.images,workers.kinds.webhooks,tests.kinds"
)
# Close connections at the end of each request and task: nothing lingers on the test
# database when pytest-django drops it.
os.environ.setdefault("DATABASE_CONN_MAX_AGE", "0")

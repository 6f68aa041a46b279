"""Settings for the job platform, a module per concern. Every value comes from the
environment (12-factor); the defaults run on one machine. docs/settings.md describes every
variable, and `.env.example` lists them.

DJANGO_SETTINGS_MODULE stays `config.settings`: this package assembles the modules below."""

from config.settings.api import *  # noqa: F403
from config.settings.base import *  # noqa: F403
from config.settings.celery import *  # noqa: F403
from config.settings.jobs import *  # noqa: F403
from config.settings.ops import *  # noqa: F403

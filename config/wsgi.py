import os

from django.core.wsgi import get_wsgi_application

from apps.core import telemetry

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Before the handler loads its middleware: Django's instrumentation adds its own. Under
# gunicorn this runs in each worker after the fork (no --preload); a no-op unless configured.
telemetry.configure("web")
application = get_wsgi_application()

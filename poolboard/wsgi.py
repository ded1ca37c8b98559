import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "poolboard.settings")
os.environ.setdefault("POOLBOARD_PROCESS", "web")
application = get_wsgi_application()

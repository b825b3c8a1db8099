"""The Django project: settings, URLs, the Celery app, roles and permissions.

The design card called this package ``platform``; a top-level package of that name would shadow
Python's standard-library module ``platform``, which Django, Celery and many libraries import.
"""

from .celery import app as celery_app

__all__ = ["celery_app"]

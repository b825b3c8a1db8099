import os

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stickerloop.settings")

app = Celery("stickerloop")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def load_export_code(**_) -> None:
    """Load what exports run on as the worker starts, before its pool does, so that the first
    export does not pay for it: the tasks import the services lazily (the services import the
    tasks), and pyarrow loads pandas on the first array it builds (0.2 s)."""
    import training_bridge.exports.run  # noqa: F401
    from training_bridge.exports.writers import load_arrow

    load_arrow()

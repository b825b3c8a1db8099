from django.apps import AppConfig
from django.urls import register_converter


class StickerloopConfig(AppConfig):
    name = "stickerloop"
    verbose_name = "Stickerloop"

    def ready(self):
        from stickerloop.converters import IdConverter

        # Registered before any URLconf is imported: every app's urls.py uses <id:...>.
        register_converter(IdConverter, "id")

from django.apps import AppConfig


class StickerloopConfig(AppConfig):
    name = "stickerloop"
    verbose_name = "Stickerloop"

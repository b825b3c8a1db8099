from django.apps import AppConfig


class QualityConfig(AppConfig):
    name = "annotation.quality"
    label = "quality"
    verbose_name = "Quality control and results"

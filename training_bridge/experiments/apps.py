from django.apps import AppConfig


class ExperimentsConfig(AppConfig):
    name = "training_bridge.experiments"
    label = "experiments"
    verbose_name = "Experiments"

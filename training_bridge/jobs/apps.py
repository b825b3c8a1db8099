from django.apps import AppConfig


class TrainingJobsConfig(AppConfig):
    name = "training_bridge.jobs"
    label = "training_jobs"
    verbose_name = "Training jobs"

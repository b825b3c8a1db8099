from django.apps import AppConfig


class PipelinesConfig(AppConfig):
    name = "training_bridge.pipelines"
    label = "pipelines"
    verbose_name = "Pipelines"

    def ready(self):
        from stickerloop import events
        from training_bridge.pipelines.relay import event_relay

        # Publishing a version and a job's end are announced through stickerloop.events; the
        # pipelines that wait on them advance from there (the jobs and curation apps never
        # import this one).
        events.subscribe(event_relay)

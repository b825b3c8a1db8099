from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Webhooks"

    def ready(self):
        from stickerloop import events
        from webhooks.relay import event_relay

        # The one place the other apps' announcements reach this app (see stickerloop.events).
        events.subscribe(event_relay)

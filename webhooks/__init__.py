"""Webhooks: signed JSON POSTs to endpoints outside when something in the loop changes state.

The app sits above every other app: it reads their rows and names their API URLs, and none of
them imports it. They announce state changes through ``stickerloop.events.publish`` (after
commit); ``apps.WebhooksConfig.ready`` subscribes ``relay.event_relay``, which puts one message on
the ``default`` queue and nothing else, so the request that changed the state waits for no
endpoint (``bench/webhook_overhead.py`` measures what it adds).

Modules: ``catalog`` (the event types endpoints subscribe to), ``models``, ``addresses`` (which
URLs may be called), ``signing`` (the signature header), ``transport`` (one POST to a checked
address), ``payload`` (the JSON body), ``relay`` (the listener), ``services/`` (endpoints,
events, deliveries), ``selectors``, ``tasks``, ``apis``, ``views``.
"""

"""Webhook writes, a module per topic: ``endpoints`` (register, edit, rotate the secret, enable,
disable, delete), ``events`` (record an announced event and a delivery per subscribed endpoint;
the test delivery) and ``deliveries`` (the delivery state machine: claim, send, settle, retry,
redeliver, recover)."""

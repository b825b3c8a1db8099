"""Prometheus metrics at ``/metrics``, built with prometheus-client.

Where each figure comes from, and why it works across processes:

- HTTP requests and their latency (``http``) are counted by each web process as it answers.
  Under gunicorn, whose workers are separate processes, each worker writes its counts to files
  in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode; ``gunicorn.conf.py``
  makes the folder and empties it at start), and a scrape, whichever worker takes it, adds up
  every worker's files. They are this web server's figures: with several web servers, Prometheus
  scrapes each.
- Task durations and failures (``tasks``) are recorded by the worker processes, which may run
  in other containers or on other machines, into Redis (the cache's: ``REDIS_URL`` or a redis://
  broker), one pipelined round trip per task; a scrape reads them back.
- Queue depths (``queues``) are read from the broker at scrape time, and the judgment, lease,
  batch, export and training figures (``state``) from the database, with a few cheap queries.
  These are the whole deployment's, the same from every web server.
"""

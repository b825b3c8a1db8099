"""Items and their candidate links draw their ids from sequences that hand each connection a
block of 1,000 at a time (PostgreSQL only).

A campaign of 10,000,000 single items takes 20,000,000 ids in one statement. Uncached, every id
locks the sequence's page and every 32nd writes a record to the log: numbering 10,000,000
selected candidates into a table took 34.8 s with ``nextval`` and 5.1 s with ``row_number()``
(measured on the 2-core machine). From a cached block an id costs a counter increment.

What it changes: ids stay increasing within a connection (so within a statement, which is what
``_single_items_insert`` and ``campaign_items_add`` rely on), but two connections making items
at the same time draw from different blocks, and a connection that closes leaves the rest of
its block unused. Nothing orders items across connections by id alone: the rating step serves
oldest first (``created_at``) and only then by id.
"""

from django.db import migrations

ID_CACHE = 1000
TABLES = ("annotation_item", "annotation_itemcandidate")


def _set_cache(schema_editor, size: int) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in TABLES:
        schema_editor.execute(f"ALTER TABLE {table} ALTER COLUMN id SET CACHE {size}")


def cache_ids(apps, schema_editor):
    _set_cache(schema_editor, ID_CACHE)


def uncache_ids(apps, schema_editor):
    _set_cache(schema_editor, 1)


class Migration(migrations.Migration):
    dependencies = [("annotation", "0005_campaign_presets")]

    operations = [migrations.RunPython(cache_ids, uncache_ids)]

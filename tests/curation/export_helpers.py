"""Exporting as the API and the worker do, and reading back what the manifest and storage hold."""

from django.core.files.storage import default_storage

from training_bridge.exports.create import dataset_export_create
from training_bridge.exports.run import dataset_export_run
from training_bridge.models import DatasetEntry


def export_now(version, fmt, user, shard_size=None, capture=None):
    """Ask for the export as the API does, then run it as the worker would."""
    export = dataset_export_create(
        version=version, export_format=fmt, shard_size=shard_size, requested_by=user
    )
    dataset_export_run(export_id=export.pk)
    export.refresh_from_db()
    assert export.status == "succeeded", export.error
    return export


def manifest(version) -> dict[int, DatasetEntry]:
    return {e.candidate_id: e for e in DatasetEntry.objects.filter(version=version)}


def stored(key: str) -> bytes:
    with default_storage.open(key, "rb") as fh:
        return fh.read()

"""The curation audit log: who did what to which dataset version or export."""

from training_bridge.models import AuditEvent


def audit_record(action: str, *, actor=None, version=None, export=None, details=None) -> AuditEvent:
    """Add an audit row (rows are only ever added)."""
    return AuditEvent.objects.create(
        action=action, actor=actor, version=version, export=export, details=details or {}
    )

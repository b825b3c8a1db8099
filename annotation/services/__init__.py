"""Annotation writes, a module per topic: ``campaigns``, ``items``, ``leases`` and ``rating``
(the rating step: submit, lease, skip, undo).

Rater membership (adding, pausing, resuming) is owned by ``annotation.quality.services.membership``,
which this package does not import: the quality app builds on this one, never the reverse.
"""

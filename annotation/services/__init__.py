"""Annotation writes, a module per topic: campaigns, items, leases and the rating step.

Rater membership (adding, pausing, resuming) is owned by ``annotation.quality.services.membership``.
"""

"""Simulated raters: scripted people who rate campaigns through the same HTTP API as the browser.

``profiles`` (hidden rater profiles drawn from a seed), ``policies`` (answers from what the
oracle sees, bent by the profile), ``judge`` (the oracle behind a lock), ``client`` (the rating
API over HTTP), ``rater`` (one rater's loop) and ``report`` (figures) are Django-free: they know
the platform only as a web site. ``services`` makes the accounts and the rendered candidates
through the platform's services; the ``simulate_raters`` command wires them together.

What a simulated rater is (reliable, a spammer, …) lives only in the command's memory and its
printed report: no row, username or request tells the platform.
"""

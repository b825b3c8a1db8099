"""Quality API, a module per topic (one class per operation): ``tables``, ``policy``, ``runs``,
``raters`` and ``gold``.

Reads (curators and engineers) come from stored results; writes (policy, gold, pauses) are for
curators; asking for a computation is open to engineers too (they evaluate their models).
"""

"""Quality writes, a module per topic: ``policy``, ``gold``, ``membership`` (adding, pausing
and resuming raters; the qualification gate), ``raters`` (rater quality and automatic pauses),
``results`` (the result pipeline), ``runs`` (the computing task's state machine) and
``crowd_import``.

This app writes to the annotation app's tables only where quality control owns the meaning:
``Item.is_gold`` / ``gold_answers`` / ``overlap_target``, ``Judgment.excluded`` (with the item's
``judgment_count``, which counts the judgments that count) and membership state. The annotation
app never imports this one.
"""

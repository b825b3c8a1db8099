"""Ids typed into query strings and form fields: one rule for what counts as one."""

from stickerloop.converters import BIGINT_MAX

# Every primary key is a BigAutoField: no row's id is larger. A filter on a larger number must not
# reach the database, whose driver may not even send it (SQLite's raises OverflowError).
MAX_ID = BIGINT_MAX

# PostgreSQL's bigint holds every 18-digit number; a longer one cannot be a row's id.
MAX_ID_DIGITS = 18


def parse_id(text: str | None) -> int | None:
    """``text`` as a row id, or None when it is not one: ASCII digits only (``"²".isdigit()`` is
    true, but ``int`` refuses it) and at most ``MAX_ID_DIGITS`` of them, so a filter on it never
    overflows the database's integer."""
    if text and text.isascii() and text.isdigit() and len(text) <= MAX_ID_DIGITS:
        return int(text)
    return None

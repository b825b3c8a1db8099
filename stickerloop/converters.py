"""URL converters: ids in paths are bounded to the database's bigint column."""

# The largest value of PostgreSQL's bigint, the type of every primary key here (BigAutoField).
BIGINT_MAX = 2**63 - 1


class IdConverter:
    """A row id: 0 to 2^63 - 1. A larger number matches no URL, so it answers 404, not 500."""

    regex = "[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if number > BIGINT_MAX:
            # Django treats ValueError as "this pattern does not match".
            raise ValueError(f"{value} is beyond the id column")
        return number

    def to_url(self, value: int) -> str:
        return str(value)

import pytest

from tests.factories import Factory


@pytest.fixture
def make(db):
    return Factory()

"""Pages and the API calls they make show times in the zone the browser names in the ``tz``
cookie; without it, UTC."""

import re
from datetime import UTC, datetime

import pytest

from generation.models import GenerationBatch

pytestmark = pytest.mark.django_db

MADE = datetime(2026, 1, 2, 23, 30, tzinfo=UTC)


def _shown(client, batch) -> tuple[str, str]:
    """The batch's creation time on the list, and the zone the top bar names."""
    html = client.get("/batches/").content.decode()
    row = re.search(rf'<tr data-batch="{batch.pk}".*?</tr>', html, re.S).group(0)
    created = re.findall(r"<td>(\d{4}-\d\d-\d\d \d\d:\d\d)</td>", row)
    zone = re.search(r'<span class="small" id="time-zone">times in ([^<]+)</span>', html).group(1)
    return created[0], zone


def test_pages_show_times_in_the_cookies_zone(site, curator):
    batch = GenerationBatch.objects.create(kind="sticker", seeds=[1])
    GenerationBatch.objects.filter(pk=batch.pk).update(created_at=MADE)
    client = site(curator)
    assert _shown(client, batch) == ("2026-01-02 23:30", "UTC")

    assert client.get(f"/api/batches/{batch.pk}/").json()["created_at"] == ("2026-01-02T23:30:00Z")

    client.cookies["tz"] = "Asia/Tokyo"
    assert _shown(client, batch) == ("2026-01-03 08:30", "Asia/Tokyo")
    # the same instant, written in the page's zone
    assert client.get(f"/api/batches/{batch.pk}/").json()["created_at"] == (
        "2026-01-03T08:30:00+09:00"
    )


@pytest.mark.parametrize("cookie", ["Mars/Olympus_Mons", "../../etc/passwd", "x" * 65, ""])
def test_an_unknown_zone_in_the_cookie_leaves_utc(site, curator, cookie):
    batch = GenerationBatch.objects.create(kind="sticker", seeds=[1])
    GenerationBatch.objects.filter(pk=batch.pk).update(created_at=MADE)
    client = site(curator)
    client.cookies["tz"] = cookie
    assert _shown(client, batch) == ("2026-01-02 23:30", "UTC")

"""Reading the rating screen from a browser test: the item on screen and the answers sent."""

from tests import factories as f


def log_in(live_server, page, username: str, next_path: str) -> None:
    page.goto(f"{live_server.url}/login/?next={next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", f.PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")


def item(page) -> int:
    page.wait_for_function("() => document.getElementById('stage').dataset.item !== ''")
    return int(page.get_attribute("#stage", "data-item"))


def wait_item_change(page, previous: int) -> int:
    page.wait_for_function(
        f"() => !['', '{previous}'].includes(document.getElementById('stage').dataset.item)"
    )
    return item(page)


def wait_sent(page, *, queued: int = 0) -> None:
    """Until every answer is acknowledged (and ``queued`` items wait in the prefetch buffer)."""
    page.wait_for_function(
        "(queued) => document.getElementById('outbox-count').textContent === '0'"
        " && window.stickerloopRater.state.queue.length >= queued",
        arg=queued,
    )


def counters(page) -> dict[str, str]:
    """The bar's counters as the rater reads them."""
    return {
        name: page.text_content(f"#{name}")
        for name in ("judged-today", "judged-total", "left-count", "campaign-progress")
    }

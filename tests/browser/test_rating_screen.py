"""A rater in Debian's Chromium: logs in, judges 10 single items and 5 pairs with the keyboard
only, undoes and skips, works through a lost connection; the database holds exactly that."""

import io
import re
import time

import pytest
from django.core.files.storage import default_storage
from django.db import connections
from PIL import Image

from annotation.models import ItemCandidate, Judgment
from generation.models import Candidate
from tests import factories as f
from tests.browser import screen

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

XSS_PROMPT = "<script>window.pwned = 1</script> a cat <b>waving</b>"


def test_rater_judges_with_the_keyboard(live_server, browser_page, csp_violations):
    try:
        _judge_with_the_keyboard(live_server, *browser_page)
    finally:
        # The test's queries ran under Playwright's event loop, on a connection of that context
        # only: close it, or the test database cannot be dropped at the end of the session.
        connections.close_all()
    assert csp_violations == []


def _judge_with_the_keyboard(live_server, context, page):
    r = f.user("kim", ["rater"])
    # Every prompt carries the script: items are created (and so served) in a shuffled order,
    # and the first one shown is the one checked.
    texts = [f"{XSS_PROMPT} number {i}" for i in range(12)]
    single = f.running_campaign(
        raters=[r],
        preset="alignment",
        name="Alignment A",
        groups=[[f.sticker(text=t)] for t in texts],
    )
    old, new = f.model_version("old"), f.model_version("new")
    pair_groups = []
    for i in range(8):
        p = f.prompt(f"pair prompt {i}")
        pair_groups.append(
            [f.sticker(version=old, on_prompt=p), f.sticker(version=new, on_prompt=p)]
        )
    pairs = f.running_campaign(raters=[r], kind="pair", name="Old vs new", groups=pair_groups)

    # Log in with the keyboard.
    page.goto(f"{live_server.url}/login/?next=/rate/{single.pk}/")
    page.focus("#id_username")
    page.keyboard.type("kim")
    page.keyboard.press("Tab")
    page.keyboard.type(f.PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/rate/{single.pk}/")

    expected: dict[int, dict] = {}
    current = screen.item(page)
    for n in range(10):
        if n == 0:
            # The prompt is shown as text, never run.
            prompt = Candidate.objects.get(item_links__item_id=current).raw_prompt
            assert prompt.startswith(XSS_PROMPT)
            assert page.text_content("#prompt .prompt-text") == prompt
            assert page.evaluate("() => window.pwned") is None
        if n == 4:
            current = _check_prefetched_next_item(page, current, expected)
            continue
        if n % 2 == 0:
            page.keyboard.press("y")
            expected[current] = {"aligned": True}
        else:
            page.keyboard.press("n")  # the focus moves on to "what is missing"
            page.keyboard.press("1")
            page.keyboard.press("4")
            expected[current] = {"aligned": False, "missing": ["subject", "count"]}
        page.keyboard.press("Enter")
        previous, current = current, screen.wait_item_change(page, current)
        if n == 6:
            # Undo once the answer reached the server: the item comes back with its answers.
            screen.wait_sent(page)
            page.keyboard.press("u")
            page.wait_for_function(
                f"() => document.getElementById('stage').dataset.item === '{previous}'"
            )
            assert (
                page.get_attribute(".question[data-key=aligned] .option.chosen", "aria-pressed")
                == "true"
            )
            page.keyboard.press("n")
            page.keyboard.press("2")
            page.keyboard.press("Enter")
            expected[previous] = {"aligned": False, "missing": ["action"]}
            assert screen.wait_item_change(page, previous) == current
    # Skip the next item with a reason.
    skipped = current
    page.keyboard.press("s")
    page.keyboard.press("2")
    current = screen.wait_item_change(page, skipped)
    screen.wait_sent(page)

    judgments = Judgment.objects.filter(campaign=single, rater=r)
    assert {j.item_id: j.answers for j in judgments if not j.skipped} == expected
    assert len(expected) == 10
    assert [(j.item_id, j.skip_reason) for j in judgments if j.skipped] == [(skipped, "Not sure")]
    assert all(j.seconds_on_item > 0 for j in judgments)

    # Five pairs; two of them judged while the network is down.
    page.goto(f"{live_server.url}/rate/{pairs.pk}/")
    current = screen.item(page)
    pair_expected: dict[int, dict] = {}
    sides = ["left", "tie", "right"]
    for n in range(5):
        assert page.locator("#stage figure.shown").count() == 2
        if n == 2:
            # The pairs answered online are acknowledged first, so the outbox then holds exactly
            # the ones answered offline (on a loaded machine the last send can still be in flight).
            screen.wait_sent(page)
            context.set_offline(True)
        answers = {"alignment": sides[n % 3], "style": sides[(n + 1) % 3], "overall": sides[n % 3]}
        page.keyboard.press(str(sides.index(answers["alignment"]) + 1))
        page.keyboard.press(str(sides.index(answers["style"]) + 1))
        page.keyboard.press("Tab")  # motion is optional for stickers: pass it by
        page.keyboard.press(str(sides.index(answers["overall"]) + 1))
        page.keyboard.press("Enter")
        pair_expected[current] = answers
        current = screen.wait_item_change(page, current)
        if n == 3:
            assert page.text_content("#outbox-count") == "2"
            # The indicator turns when a send fails, which may still be under way.
            page.wait_for_function(
                "() => document.getElementById('net').dataset.online === '0'", timeout=10_000
            )
            context.set_offline(False)
            page.evaluate("() => window.dispatchEvent(new Event('online'))")
    screen.wait_sent(page)
    stored = Judgment.objects.filter(campaign=pairs, rater=r)
    assert {j.item_id: j.answers for j in stored} == pair_expected
    assert stored.count() == 5


def _check_prefetched_next_item(page, current: int, expected: dict) -> int:
    """Answer the current item and check the next one appears from the prefetch buffer: shown
    while its submit is still held back, with no request for its data or media afterwards."""
    screen.wait_sent(page, queued=1)
    nxt = page.evaluate("() => window.stickerloopRater.state.queue[0]")
    urls = {c["url"] for c in nxt["candidates"]}
    # The next item's media were fetched before this answer was given.
    assert page.evaluate(
        "(urls) => urls.every(u => window.stickerloopRater.media.get(u)?.complete)", list(urls)
    )
    seen: list[str] = []
    page.on("request", lambda request: seen.append(request.url))
    # Hold every rating request back for a second: the screen must not wait for it.
    page.evaluate(
        """() => {
            const real = window.fetch;
            window.fetch = (url, options) =>
                new Promise((resolve) => setTimeout(resolve, 1000)).then(() => real(url, options));
            window.restoreFetch = () => { window.fetch = real; };
        }"""
    )
    page.keyboard.press("y")
    started = time.monotonic()
    page.keyboard.press("Enter")
    page.wait_for_function(
        f"() => document.getElementById('stage').dataset.item === '{nxt['id']}'", timeout=900
    )
    shown_after = time.monotonic() - started
    assert shown_after < 0.9
    assert page.text_content("#outbox-count") == "1"  # the answer is still on its way
    page.evaluate("() => window.restoreFetch()")
    expected[current] = {"aligned": True}
    screen.wait_sent(page)
    assert not [u for u in seen if any(u.endswith(m) for m in urls)]
    return nxt["id"]


def _frames_shown(page) -> list[int]:
    return page.eval_on_selector_all(
        "#stage img.animation", "els => els.map(e => Number(e.dataset.frame))"
    )


def _opaque_pixels(frame: Image.Image) -> dict[tuple[int, int], tuple[int, int, int]]:
    """The frame's opaque pixels by (x, y): those the stage's background cannot show through."""
    width, height = frame.size
    rgba = frame.load()
    return {
        (x, y): rgba[x, y][:3] for y in range(height) for x in range(width) if rgba[x, y][3] == 255
    }


def _pixels_drawn(locator, frame: Image.Image) -> dict[tuple[int, int], tuple[int, int, int]]:
    """What the screen draws in ``locator``'s box of each of ``frame``'s opaque pixels, read at
    the centre of the pixel's square."""
    shot = Image.open(io.BytesIO(locator.screenshot())).convert("RGB")
    sx, sy = shot.width / frame.width, shot.height / frame.height
    return {
        (x, y): shot.getpixel((int((x + 0.5) * sx), int((y + 0.5) * sy)))
        for x, y in _opaque_pixels(frame)
    }


def test_best_of_n_animations(live_server, browser_page, csp_violations):
    try:
        _best_of_n(live_server, *browser_page)
    finally:
        connections.close_all()
    assert csp_violations == []


def _best_of_n(live_server, context, page):
    r = f.user("ben", ["rater"])
    source = f.sticker(on_prompt=f.prompt("a frog"))
    teachers = [f.model_version(f"teacher-{i}", kind="animation") for i in range(3)]
    animations = [f.animation(source=source, version=t, frames=4) for t in teachers]
    campaign = f.running_campaign(
        raters=[r], kind="best_of_n", name="Teachers", groups=[animations]
    )
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{live_server.url}/login/?next=/rate/{campaign.pk}/")
    page.fill("#id_username", "ben")
    page.fill("#id_password", f.PASSWORD)
    page.keyboard.press("Enter")
    item = screen.item(page)
    # The screen names candidates by position; the stored answers name them by id.
    assert page.eval_on_selector_all(
        "#stage figure.shown", "els => els.map(e => e.dataset.candidate)"
    ) == ["0", "1", "2"]
    shown = list(
        ItemCandidate.objects.filter(item_id=item)
        .order_by("position")
        .values_list("candidate_id", flat=True)
    )
    assert sorted(shown) == [a.pk for a in animations]
    assert page.locator("#stage img.source-sticker").count() == 3
    # One image per animation, its frame strip: no frame and no animated file is fetched.
    strips = page.eval_on_selector_all(
        "#stage img.animation", "els => els.map(e => e.getAttribute('src'))"
    )
    assert [url.rsplit("/", 2)[1:] for url in strips] == [
        ["0", "strip"],
        ["1", "strip"],
        ["2", "strip"],
    ]
    assert [u for u in requested if re.search(r"/(frame-\d+|file)$", u)] == []
    # The frames loop, every animation on the same frame; space pauses, "." steps one frame.
    first = "#stage img.animation"
    start = page.get_attribute(first, "data-frame")
    page.wait_for_function(
        f"(f) => document.querySelector('{first}').dataset.frame !== f", arg=start
    )
    page.keyboard.press(" ")
    [paused] = set(_frames_shown(page))
    page.wait_for_timeout(400)
    assert _frames_shown(page) == [paused] * 3
    page.keyboard.press(".")
    stepped = (paused + 1) % 4
    assert _frames_shown(page) == [stepped] * 3
    assert page.text_content("#frame-info") == f"frame {stepped + 1}/4"
    # What each animation shows is that frame of its own, pixel for pixel.
    for position, candidate_id in enumerate(shown):
        prefix = Candidate.objects.get(pk=candidate_id).frames_prefix
        with default_storage.open(f"{prefix}frame-{stepped:03d}.png") as fh:
            frame = Image.open(io.BytesIO(fh.read())).convert("RGBA")
        drawn = page.locator(f"#stage figure.shown[data-candidate='{position}'] img.animation")
        assert _pixels_drawn(drawn, frame) == _opaque_pixels(frame)
    # Pass/fail per animation, then the best one.
    for key in ("y", "n", "y"):
        page.keyboard.press(key)
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.getElementById('outbox-count').textContent === '0'")
    [judgment] = Judgment.objects.filter(item_id=item)
    assert judgment.answers == {
        "motion_pass": {str(shown[0]): True, str(shown[1]): False, str(shown[2]): True},
        "best": shown[0],
    }

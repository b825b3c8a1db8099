"""The rating screen keeps the rater oriented, in Debian's Chromium: keys land where the rater
expects, the counters are the server's and survive a reload, the end of the queue is a screen of
its own, a best-of-4 shows four animations at once, and controls and icons appear where they
apply and render without a font's help."""

import pytest

from annotation.models import Judgment
from annotation.services.campaigns import campaign_create, campaign_start
from annotation.services.items import campaign_items_from_selection
from generation.models import ModelKind
from tests import factories as f
from tests.browser import screen

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _focused(page) -> str:
    return page.evaluate("() => document.activeElement.tagName")


def _note(page) -> str:
    return page.input_value(".question[data-key=note] textarea")


def test_keys_answer_questions_and_only_shift_n_enters_the_note(live_server, page):
    r = f.user("kim", ["rater"])
    campaign = f.running_campaign(raters=[r], n_items=2, preset="alignment", name="Align")
    screen.log_in(live_server, page, "kim", f"/rate/{campaign.pk}/")
    item = screen.item(page)
    # The label says "optional" once.
    assert page.text_content(".question[data-key=note] .q-label") == "Note (optional)"
    # "n" answers Fail and highlights "what is missing"; its digits tick options there.
    page.keyboard.press("n")
    assert page.get_attribute(".question.active", "data-key") == "missing"
    page.keyboard.press("1")
    page.keyboard.press("3")
    # Tab highlights the note but leaves the focus where it was: digits type nothing into it.
    page.keyboard.press("Tab")
    assert page.get_attribute(".question.active", "data-key") == "note"
    page.keyboard.press("1")
    page.keyboard.press("3")
    assert (_focused(page), _note(page)) == ("BODY", "")
    # Shift+N enters the note box; Escape leaves it, and the keys answer questions again.
    page.keyboard.press("Shift+N")
    assert _focused(page) == "TEXTAREA"
    page.keyboard.type("too dark")
    page.keyboard.press("Escape")
    assert (_focused(page), _note(page)) == ("BODY", "too dark")
    page.keyboard.press("Shift+Tab")
    assert page.get_attribute(".question.active", "data-key") == "missing"
    page.keyboard.press("1")  # takes "subject" back
    page.keyboard.press("Enter")
    screen.wait_item_change(page, item)
    screen.wait_sent(page)
    [judgment] = Judgment.objects.filter(campaign=campaign)
    assert (judgment.item_id, judgment.answers) == (
        item,
        {"aligned": False, "missing": ["attribute"], "note": "too dark"},
    )


def test_counters_are_the_servers_and_survive_a_reload(live_server, page):
    r = f.user("kim", ["rater"])
    campaign = f.running_campaign(raters=[r], n_items=5, preset="style", name="Style")
    screen.log_in(live_server, page, "kim", f"/rate/{campaign.pk}/")
    item = screen.item(page)
    assert screen.counters(page) == {
        "judged-today": "0",
        "judged-total": "0",
        "left-count": "5",
        "campaign-progress": "0 of 5 items done (0%)",
    }
    # Two judged, one skipped.
    for _ in range(2):
        page.keyboard.press("y")
        page.keyboard.press("Enter")
        item = screen.wait_item_change(page, item)
    page.keyboard.press("s")
    page.keyboard.press("1")
    screen.wait_item_change(page, item)
    screen.wait_sent(page)
    # Each answer the server acknowledged moved the rater's own counters at once; the
    # campaign's progress is read from the server (every minute, and on each visit).
    assert {k: v for k, v in screen.counters(page).items() if k != "campaign-progress"} == {
        "judged-today": "2",
        "judged-total": "2",
        "left-count": "2",
    }
    # A new visit starts from the server's figures: nothing resets.
    page.reload()
    screen.item(page)
    assert screen.counters(page) == {
        "judged-today": "2",
        "judged-total": "2",
        "left-count": "2",
        "campaign-progress": "2 of 5 items done (40%)",
    }
    assert Judgment.objects.filter(campaign=campaign, skipped=False).count() == 2


def test_the_end_of_the_queue_leaves_nothing_to_submit(live_server, page):
    r = f.user("kim", ["rater"])
    campaign = f.running_campaign(raters=[r], n_items=2, preset="style", name="Short")
    screen.log_in(live_server, page, "kim", f"/rate/{campaign.pk}/")
    item = screen.item(page)
    page.keyboard.press("y")
    page.keyboard.press("Enter")
    last = screen.wait_item_change(page, item)
    page.keyboard.press("n")
    page.keyboard.press("Enter")
    page.wait_for_selector("#empty:not([hidden])")
    page.wait_for_function(
        "() => document.getElementById('empty-title').textContent === 'All done for now'"
    )
    screen.wait_sent(page)
    # Nothing of the last item stays: no media, no questions, no Submit to press.
    assert page.locator("#stage figure").count() == 0
    assert page.locator("#questions .question").count() == 0
    assert not page.is_visible("#submit")
    assert page.text_content("#empty-text") == "No more items for you in this campaign right now."
    page.wait_for_function(
        "() => document.getElementById('campaign-progress').textContent"
        " === '2 of 2 items done (100%)'"
    )
    assert screen.counters(page)["left-count"] == "0"
    assert page.text_content("#empty-summary") == (
        "You judged 2 item(s) today and 2 in all here. The campaign has 2 of 2 items done."
    )
    page.keyboard.press("Enter")
    page.keyboard.press("y")
    assert Judgment.objects.filter(campaign=campaign).count() == 2
    # The last answer can still be taken back from here.
    assert page.is_visible("#empty-undo")
    page.keyboard.press("u")
    page.wait_for_function(f"() => document.getElementById('stage').dataset.item === '{last}'")
    assert page.is_visible("#submit") and not page.is_visible("#empty")
    assert Judgment.objects.filter(campaign=campaign).count() == 1


def test_a_best_of_4_shows_four_animations_with_svg_controls(live_server, page):
    # given: two teachers animated a sticker with two seeds each, and the curator asked for
    # items of four
    r = f.user("ben", ["rater"])
    source = f.sticker(on_prompt=f.prompt("a frog"))
    teachers = [f.model_version(f"teacher-{i}", kind=ModelKind.ANIMATION) for i in range(2)]
    for seed in (0, 1):
        for teacher in teachers:
            f.animation(source=source, version=teacher, seed=seed)
    campaign = campaign_create(name="Teachers", kind="best_of_n", raters=[r])
    campaign_items_from_selection(
        campaign=campaign, model_versions=[t.pk for t in teachers], group_size=4
    )
    campaign_start(campaign=campaign)
    # when
    screen.log_in(live_server, page, "ben", f"/rate/{campaign.pk}/")
    screen.item(page)
    # then: four animations, each wholly in view without scrolling
    boxes = [
        page.locator("#stage figure.shown").nth(i).bounding_box()
        for i in range(page.locator("#stage figure.shown").count())
    ]
    assert len(boxes) == 4
    assert all(b["y"] >= 0 and b["y"] + b["height"] <= 900 and b["width"] >= 120 for b in boxes)
    assert page.locator(".question[data-key=motion_pass]").count() == 4
    assert page.locator(".question[data-key=best] .option").count() == 5  # 1 to 4, and None
    # The player's buttons draw SVG icons, and no button relies on a glyph a font may lack.
    assert page.is_visible("#anim-controls")
    play = page.locator("#anim-controls .play-toggle svg.icon-pause")
    assert play.bounding_box()["width"] > 0
    assert page.locator("#anim-controls button svg").count() == 6
    texts = page.eval_on_selector_all("#rater button", "els => els.map(e => e.textContent)")
    assert [t for t in texts if any(ord(ch) > 0x2026 for ch in t)] == []
    page.keyboard.press(" ")
    assert page.get_attribute("#anim-controls .play-toggle", "data-playing") == "0"
    assert play.bounding_box() is None  # the play icon shows instead
    assert page.locator("#anim-controls .play-toggle svg.icon-play").bounding_box()["width"] > 0


def test_still_stickers_get_no_animation_controls(live_server, page):
    r = f.user("kim", ["rater"])
    campaign = f.running_campaign(raters=[r], n_items=1, preset="style", name="Stills")
    screen.log_in(live_server, page, "kim", f"/rate/{campaign.pk}/")
    screen.item(page)
    assert page.locator("#stage img.sticker").count() == 1
    assert not page.is_visible("#anim-controls")
    page.keyboard.press(" ")
    page.keyboard.press(".")
    assert page.text_content("#frame-info") == ""

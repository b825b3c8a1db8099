"""A curator ticks stickers in the gallery, asks two teachers to animate them with a motion
prompt each, watches the batch's progress, and sees the animations beside their stickers; a real
worker runs the tiny animation models."""

import pytest
from django.db import connections

from generation.models import Candidate, GenerationBatch
from tests import factories as f

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_animation_batch_from_the_page(
    live_server, browser_page, csp_violations, models, start_worker
):
    start_worker()
    cat = f.sticker(version=models["sticker-base"], text="a cat")
    dog = f.sticker(version=models["sticker-base"], text="a dog")
    teachers = [models["anim-teacher-a"], models["anim-teacher-b"]]
    errors: list[str] = []
    _, page = browser_page
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        batch_id = _animate(live_server, page, cat, dog, teachers)
        made = list(
            Candidate.objects.filter(batch_id=batch_id)
            .order_by("model_version__name", "source_id")
            .values_list("model_version__name", "source_id", "motion_prompt", "frame_count")
        )
    finally:
        # The test's queries ran under Playwright's event loop, on a connection of that context
        # only: close it, or the test database cannot be dropped at the end of the session.
        connections.close_all()
    assert made == [
        (teacher.name, source.pk, prompt, 4)
        for teacher in teachers
        for source, prompt in ((cat, "waves its paw"), (dog, "spins once"))
    ]
    assert (csp_violations, errors) == ([], [])


def _animate(live_server, page, cat, dog, teachers) -> int:
    f.user("cora", ["curator"])
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", "cora")
    page.fill("#id_password", f.PASSWORD)
    with page.expect_navigation():
        page.keyboard.press("Enter")

    # The gallery: tick both stickers and take them to the animation batch page.
    page.goto(f"{live_server.url}/candidates/?kind=sticker")
    for sticker in (cat, dog):
        page.check(f'input[name=sources][value="{sticker.pk}"]')
    with page.expect_navigation():
        page.click("text=Animate the ticked stickers")
    assert page.input_value("input[name=stickers]") == f"{cat.pk} {dog.pk}"

    # A motion prompt each, two teachers, four frames.
    page.fill("textarea[name=motion_prompts]", f"{cat.pk},waves its paw\n{dog.pk},spins once\n")
    for teacher in teachers:
        page.check(f'input[name=model_versions][value="{teacher.pk}"]')
    page.fill("input[name=seeds]", "7")
    page.fill("input[name=num_frames]", "4")
    page.fill("input[name=num_inference_steps]", "2")
    with page.expect_navigation():
        page.click("text=Queue animation batch")
    batch = GenerationBatch.objects.get()
    assert page.url == f"{live_server.url}/batches/{batch.pk}/"
    assert (batch.kind, batch.total) == ("animation", 4)

    # The batch list moves its bar as the worker stores the animations, as for stickers.
    page.goto(f"{live_server.url}/batches/")
    row = f'tr[data-batch="{batch.pk}"]'
    page.wait_for_function(
        "(row) => document.querySelector(row + ' [data-field=status]').textContent === 'succeeded'",
        arg=row,
        timeout=180_000,
    )
    assert page.text_content(f"{row} [data-field=counts]") == "4 / 4"
    assert page.get_attribute(f"{row} [data-field=bar]", "data-percent") == "100"

    # The batch's page shows each animation beside its source sticker, with its motion prompt.
    page.goto(f"{live_server.url}/batches/{batch.pk}/")
    pairs = page.locator("figure.candidate .pair")
    assert pairs.count() == 4
    assert sorted(
        (p.locator("img").nth(0).get_attribute("alt"), p.locator("img").nth(1).get_attribute("alt"))
        for p in pairs.all()
    ) == sorted(
        (f"source sticker {c.source_id}", f"animation {c.pk}")
        for c in Candidate.objects.filter(batch=batch)
    )
    assert sorted(page.locator("figure.candidate .prompt").all_text_contents()) == [
        "spins once",
        "spins once",
        "waves its paw",
        "waves its paw",
    ]
    # Every image loads (the animation's WebP and its source's PNG).
    assert page.eval_on_selector_all(
        "figure.candidate img", "imgs => imgs.every((i) => i.complete && i.naturalWidth > 0)"
    )
    return batch.pk

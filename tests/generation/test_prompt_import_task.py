"""A prompt file over PROMPT_IMPORT_SYNC_BYTES is stored and imported by a task, with status,
progress and a bounded report; a bad file ends FAILED and stores nothing."""

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile

from generation import tasks as generation_tasks
from generation.models import Prompt, PromptImport, PromptSet, Tag
from generation.services.prompts import (
    prompt_import_create,
    prompt_import_fail,
    prompt_import_run,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch):
    """The ids the import task is sent, once the request's transaction commits."""
    messages = []
    monkeypatch.setattr(generation_tasks.import_prompts, "delay", lambda *a: messages.append(a))
    return messages


@pytest.fixture
def small_sync(settings):
    settings.PROMPT_IMPORT_SYNC_BYTES = 64


def _queue(content: bytes, *, name="big", file_format="text", file_name="p.txt"):
    return prompt_import_create(
        name=name, file=ContentFile(content, name=file_name), file_format=file_format
    )


def test_a_large_upload_answers_202_and_is_imported_by_the_task(
    api, curator, small_sync, sent, django_capture_on_commit_callbacks
):
    # given
    content = b"".join(f"prompt {n}\n".encode() for n in range(20)) + b"prompt 3\n\n"
    client = api(curator)
    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/api/prompt-sets/import/",
            {"name": "big", "file": SimpleUploadedFile("prompts.txt", content)},
        )
    # then: queued, nothing parsed yet
    assert response.status_code == 202
    body = response.json()
    prompt_import = PromptImport.objects.get()
    status_url = f"/api/prompt-sets/imports/{prompt_import.pk}/"
    assert response["Location"] == status_url
    assert {k: v for k, v in body.items() if not k.endswith("_at")} == {
        "id": prompt_import.pk,
        "name": "big",
        "file_format": "text",
        "original_name": "prompts.txt",
        "size_bytes": len(content),
        "status": "queued",
        "processed": 0,
        "progress": 0,
        "report": {},
        "error": "",
        "prompt_set": None,
        "status_url": status_url,
    }
    assert (body["started_at"], body["finished_at"]) == (None, None)
    assert sent == [(prompt_import.pk,)]
    assert prompt_import.location.startswith("imports/prompts/")
    assert default_storage.exists(prompt_import.location)
    assert PromptSet.objects.count() == 0

    # when the worker runs it
    generation_tasks.import_prompts(prompt_import.pk)
    # then
    status = client.get(status_url).json()
    prompt_set = PromptSet.objects.get(name="big")
    assert (status["status"], status["progress"], status["processed"], status["error"]) == (
        "succeeded",
        100,
        22,
        "",
    )
    assert status["prompt_set"] == prompt_set.pk
    assert status["report"] == {
        "imported": 20,
        "duplicates": [{"line": 21, "first_line": 4, "text": "prompt 3"}],
        "duplicate_count": 1,
        "empty_lines": [22],
        "empty_line_count": 1,
    }
    assert list(prompt_set.prompts.values_list("text", flat=True)) == [
        f"prompt {n}" for n in range(20)
    ]
    assert prompt_set.created_by == curator
    assert not default_storage.exists(prompt_import.location)


def test_large_content_is_queued_like_a_file(api, curator, small_sync, sent):
    response = api(curator).post(
        "/api/prompt-sets/import/",
        {"name": "mine", "content": "a cat\n" * 10 + "a dog\n" * 10},
        format="json",
    )
    assert response.status_code == 202
    assert response.json()["original_name"] == "content"
    prompt_import_run(import_id=response.json()["id"])
    prompt_set = PromptSet.objects.get(name="mine")
    assert (prompt_set.created_by, prompt_set.prompts.count()) == (curator, 2)


def test_a_small_file_is_still_imported_at_once(api, curator, sent):
    response = api(curator).post(
        "/api/prompt-sets/import/", {"name": "small", "content": "a cat\na dog\n"}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["imported"] == 2
    assert (PromptImport.objects.count(), sent) == (0, [])


def test_the_report_is_bounded(small_sync, sent):
    # given: 1 prompt, 300 duplicates and 200 empty lines, as CSV with tags
    content = b"text,tags\n" + b"a cat,animal\n" * 301 + b",\n" * 200
    prompt_import = _queue(content, file_format="csv", file_name="p.csv")
    # when
    prompt_import_run(import_id=prompt_import.pk)
    # then
    prompt_import.refresh_from_db()
    assert prompt_import.status == "succeeded"
    assert prompt_import.report == {
        "imported": 1,
        "duplicates": [{"line": n, "first_line": 2, "text": "a cat"} for n in range(3, 103)],
        "duplicate_count": 300,
        "empty_lines": list(range(303, 403)),
        "empty_line_count": 200,
    }
    assert list(Prompt.objects.values_list("text", "tags__name")) == [("a cat", "animal")]


def test_progress_is_recorded_while_the_file_is_read(small_sync, sent, monkeypatch):
    from generation.services import prompts

    monkeypatch.setattr(prompts, "PROGRESS_ROWS", 10)
    seen = []
    record = prompts._progress_recorder

    def watching(import_id, content):
        inner = record(import_id, content)

        def wrapped(processed):
            inner(processed)
            seen.append(
                tuple(PromptImport.objects.values_list("status", "processed", "progress").get())
            )

        return wrapped

    monkeypatch.setattr(prompts, "_progress_recorder", watching)
    prompt_import = _queue(b"".join(f"p{n}\n".encode() for n in range(25)))
    prompt_import_run(import_id=prompt_import.pk)
    # 25 lines and the empty one after the last newline: 26 in the count
    assert seen == [("running", 10, 34), ("running", 20, 69), ("running", 25, 86)]
    assert tuple(PromptImport.objects.values_list("status", "processed", "progress").get()) == (
        "succeeded",
        25,
        100,
    )


@pytest.mark.parametrize(
    ("content", "file_format", "error"),
    [
        (
            b'{"text": "a cat"}\n' * 10 + b"not json\n",
            "jsonl",
            "Line 11 is not valid JSON: Expecting value.",
        ),
        (b"a cat\n" * 10 + b"\xff\xfe\n", "text", "The file is not UTF-8 text."),
        (
            b"a cat\n" * 10 + b"b" * 1001 + b"\n",
            "text",
            "Prompts may have at most 1000 characters; line(s) 11 are longer.",
        ),
        (b"\n" * 100, "text", "The file holds no prompts."),
    ],
)
def test_a_bad_file_ends_failed_with_the_message_and_stores_nothing(
    small_sync, sent, content, file_format, error
):
    prompt_import = _queue(content, file_format=file_format)
    generation_tasks.import_prompts(prompt_import.pk)
    prompt_import.refresh_from_db()
    assert (prompt_import.status, prompt_import.error, prompt_import.report) == (
        "failed",
        error,
        {},
    )
    assert prompt_import.finished_at is not None
    assert (PromptSet.objects.count(), Prompt.objects.count(), Tag.objects.count()) == (0, 0, 0)
    assert not default_storage.exists(prompt_import.location)


def test_a_name_taken_while_queued_fails_the_import(small_sync, sent):
    prompt_import = _queue(b"a cat\n" * 20, name="taken")
    PromptSet.objects.create(name="taken")
    prompt_import_run(import_id=prompt_import.pk)
    prompt_import.refresh_from_db()
    assert (prompt_import.status, prompt_import.error) == (
        "failed",
        "A prompt set named 'taken' exists already.",
    )
    assert Prompt.objects.count() == 0


def test_a_name_is_refused_while_it_is_being_imported(api, curator, small_sync, sent):
    client = api(curator)
    body = {"name": "twice", "content": "a cat\n" * 20}
    assert client.post("/api/prompt-sets/import/", body, format="json").status_code == 202
    again = client.post("/api/prompt-sets/import/", body, format="json")
    assert again.status_code == 400
    assert again.json() == {"name": ["A prompt set named 'twice' is being imported."]}
    assert PromptImport.objects.count() == 1


def test_a_retried_task_stores_once(small_sync, sent):
    # given: a worker died after claiming the import (it is RUNNING), and one finished it
    prompt_import = _queue(b"a cat\na dog\n" * 10)
    PromptImport.objects.filter(pk=prompt_import.pk).update(status="running")
    generation_tasks.import_prompts(prompt_import.pk)
    # when the message is delivered again, and once more
    generation_tasks.import_prompts(prompt_import.pk)
    generation_tasks.import_prompts(prompt_import.pk)
    # then
    prompt_import.refresh_from_db()
    assert (prompt_import.status, prompt_import.report["imported"]) == ("succeeded", 2)
    assert PromptSet.objects.count() == 1
    assert list(Prompt.objects.values_list("text", flat=True)) == ["a cat", "a dog"]


def test_a_failed_import_stays_failed(small_sync, sent):
    prompt_import = _queue(b"a cat\n" * 20)
    prompt_import_fail(import_id=prompt_import.pk, error="The import ran past its time limit.")
    prompt_import_run(import_id=prompt_import.pk)
    prompt_import.refresh_from_db()
    assert (prompt_import.status, prompt_import.error) == (
        "failed",
        "The import ran past its time limit.",
    )
    assert PromptSet.objects.count() == 0


def test_a_large_file_on_the_page_is_queued_and_shown_in_progress(
    client, curator, small_sync, sent
):
    client.force_login(curator)
    upload = SimpleUploadedFile("big.txt", b"a cat\n" * 20)
    html = client.post("/prompt-sets/", {"name": "page big", "file": upload}).content.decode()
    assert "Importing “page big” (120\xa0bytes) in the background" in html
    assert '<meta http-equiv="refresh" content="5">' in html
    assert "<td>Queued</td>" in html
    prompt_import_run(import_id=PromptImport.objects.get().pk)
    html = client.get("/prompt-sets/").content.decode()
    assert "<td>Succeeded</td>" in html
    assert "Imported 1 prompts; 19 duplicate(s) skipped." in html
    assert 'http-equiv="refresh"' not in html

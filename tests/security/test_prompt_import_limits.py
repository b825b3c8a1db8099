"""Prompt import is bounded in bytes and lines, and its report in size."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from generation.models import Prompt, PromptSet, Tag

pytestmark = pytest.mark.django_db


def _import(client, content: bytes, name="p.txt", **fields):
    upload = SimpleUploadedFile(name, content)
    return client.post("/api/prompt-sets/import/", {"name": "set", "file": upload, **fields})


def test_a_file_over_20_mib_is_refused(api, curator):
    response = _import(api(curator), b"a\n" * (10 * 2**20) + b"b")
    assert response.status_code == 400
    assert response.json() == {
        "file": ["A prompt file may have at most 20 MiB (20,971,520 bytes)."]
    }
    assert PromptSet.objects.count() == 0


def test_the_page_refuses_it_too(curator):
    client = Client()
    client.force_login(curator)
    upload = SimpleUploadedFile("p.txt", b"a\n" * (10 * 2**20) + b"b")
    response = client.post("/prompt-sets/", {"name": "set", "file": upload})
    assert response.status_code == 200
    assert b"A prompt file may have at most 20 MiB (20,971,520 bytes)." in response.content
    assert PromptSet.objects.count() == 0


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("p.txt", b"a\nb\nc\nd\n"),
        ("p.csv", b"text\na\nb\nc\nd\n"),
        ("p.jsonl", b'{"text": "a"}\n{"text": "b"}\n\n{"text": "c"}\n'),
    ],
)
def test_more_lines_than_the_limit_store_nothing(api, curator, settings, name, content):
    settings.PROMPT_IMPORT_MAX_ROWS = 3
    response = _import(api(curator), content, name=name)
    assert response.status_code == 400
    assert response.json() == {"file": ["A prompt file may have at most 3 lines (CSV: rows)."]}
    assert PromptSet.objects.count() == 0


def test_a_file_at_the_line_limit_imports(api, curator, settings):
    settings.PROMPT_IMPORT_MAX_ROWS = 3
    response = _import(api(curator), b"text\na\nb\nc\n", name="p.csv")
    assert response.status_code == 201
    assert response.json()["imported"] == 3


def test_the_duplicate_report_lists_the_first_100_and_counts_them_all(api, curator):
    content = b"a cat\n" * 251 + b"\n" * 150
    response = _import(api(curator), content)
    assert response.status_code == 201
    body = response.json()
    assert body["imported"] == 1
    assert body["duplicate_count"] == 250
    assert body["duplicates"] == [
        {"line": n, "first_line": 1, "text": "a cat"} for n in range(2, 102)
    ]
    assert body["empty_line_count"] == 150
    assert body["empty_lines"] == list(range(252, 352))


def test_a_tag_over_64_characters_is_400_naming_tags(api, curator):
    content = "text,tags\na cat," + "t" * 65 + "\na dog,short\n"
    response = _import(api(curator), content.encode(), name="p.csv")
    assert response.status_code == 400
    assert response.json() == {
        "tags": ["Tags may have at most 64 characters; line(s) 2 have longer ones."]
    }
    assert (PromptSet.objects.count(), Prompt.objects.count(), Tag.objects.count()) == (0, 0, 0)


def test_a_tag_of_64_characters_is_kept(api, curator):
    content = "text,tags\na cat," + "t" * 64 + "\n"
    assert _import(api(curator), content.encode(), name="p.csv").status_code == 201
    assert list(Tag.objects.values_list("name", flat=True)) == ["t" * 64]


@pytest.mark.parametrize(
    ("name", "content", "error"),
    [
        ("p.txt", b"a cat\nb\x00d\n", "Line 2: Null characters are not allowed."),
        ("p.csv", b"text\na cat\nb\x00d\n", "Line 3: Null characters are not allowed."),
        (
            "p.jsonl",
            b'{"text": "a cat"}\n{"text": "b\\u0000d"}\n',
            "Line 2: text: Null characters are not allowed.",
        ),
        (
            "p.jsonl",
            b'{"text": "a cat"}\n' + b"[" * 100_000 + b"]" * 100_000 + b"\n",
            "Line 2: JSON may nest at most 32 levels.",
        ),
    ],
)
def test_a_file_no_column_could_hold_stores_nothing(api, curator, name, content, error):
    response = _import(api(curator), content, name=name)
    assert response.status_code == 400
    assert response.json() == {"file": [error]}
    assert PromptSet.objects.count() == 0

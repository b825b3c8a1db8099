import pytest
from django.core.exceptions import ValidationError

from generation.models import Prompt, PromptSet, Tag
from generation.services.prompts import prompt_set_import


@pytest.mark.django_db
def test_text_import_reports_duplicates_and_empty_lines():
    # given
    content = "a cat\n\na dog\na cat\n  \na fox\n"
    # when
    prompt_set, report = prompt_set_import(name="animals", content=content, file_format="text")
    # then
    assert list(prompt_set.prompts.values_list("position", "text")) == [
        (0, "a cat"),
        (1, "a dog"),
        (2, "a fox"),
    ]
    assert report.imported == 3
    assert report.duplicates == [{"line": 4, "first_line": 1, "text": "a cat"}]
    assert report.empty_lines == [2, 5]


@pytest.mark.django_db
def test_csv_import_keeps_tags_and_enhanced_text():
    content = "text,tags,enhanced_text\na cat,animal;cute,a fluffy cat sticker\na car,vehicle,\n"
    prompt_set, report = prompt_set_import(name="csv", content=content, file_format="csv")
    cat, car = prompt_set.prompts.order_by("position")
    assert sorted(cat.tags.values_list("name", flat=True)) == ["animal", "cute"]
    assert cat.enhanced_text == "a fluffy cat sticker"
    assert list(car.tags.values_list("name", flat=True)) == ["vehicle"]
    assert report.imported == 2


@pytest.mark.django_db
def test_jsonl_import_with_tags():
    content = '{"text": "a cat", "tags": ["animal"]}\n\n{"text": "a cup"}\n'
    prompt_set, report = prompt_set_import(name="j", content=content, file_format="jsonl")
    assert [p.text for p in prompt_set.prompts.all()] == ["a cat", "a cup"]
    assert report.empty_lines == [2]
    assert list(Tag.objects.values_list("name", flat=True)) == ["animal"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("content", "file_format", "expected"),
    [
        ("\n  \n", "text", {"file": ["The file holds no prompts."]}),
        (
            "a" * 1001 + "\n",
            "text",
            {"file": ["Prompts may have at most 1000 characters; line(s) 1 are longer."]},
        ),
        ('{"text": 3}\n', "jsonl", {"file": ["Line 1 needs a string 'text' field."]}),
        (
            "prompt\nx\n",
            "csv",
            {"file": ["A CSV prompt file needs a header with a 'text' column."]},
        ),
        ("x", "yaml", {"format": ["Unknown format 'yaml': use text, csv or jsonl."]}),
    ],
)
def test_bad_files_store_nothing(content, file_format, expected):
    with pytest.raises(ValidationError) as exc:
        prompt_set_import(name="bad", content=content, file_format=file_format)
    assert exc.value.message_dict == expected
    assert PromptSet.objects.count() == 0
    assert Prompt.objects.count() == 0

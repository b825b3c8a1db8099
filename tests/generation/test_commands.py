import pytest
from django.core.management import call_command

from generation.models import ModelVersion

pytestmark = pytest.mark.django_db


def test_build_default_models_registers_them_once(tmp_path, capsys):
    call_command("build_default_models", root=tmp_path)
    call_command("build_default_models", root=tmp_path)
    rows = list(ModelVersion.objects.order_by("name").values_list("name", "kind", "role"))
    assert rows == [
        ("anim-student", "animation", "student"),
        ("anim-teacher-a", "animation", "teacher"),
        ("anim-teacher-b", "animation", "teacher"),
        ("sticker-base", "image", "base"),
    ]
    base = ModelVersion.objects.get(name="sticker-base")
    assert base.uri == str(tmp_path / "sticker-base")
    # The committed world models: a word-level text encoder over 32 tokens.
    assert base.max_prompt_tokens == 32
    assert f"sticker-base         image      base     {base.uri}" in capsys.readouterr().out

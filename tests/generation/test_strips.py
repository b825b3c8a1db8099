"""Frame strips: an animation's frames side by side in one PNG, stored where generation stores
its frames, or made from the stored frames on first request."""

import io
import threading
import time

import pytest
from django.core.files.storage import FileSystemStorage, default_storage
from django.db import connection
from PIL import Image

from generation.models import Candidate, GenerationChunk
from generation.pipelines import encode_frame_strip
from generation.services.batches import generation_batch_create, generation_batch_plan
from generation.services.chunks import generation_chunk_run
from generation.services.strips import frame_strip_ensure, frame_strip_key
from stickerloop.storage import staging_key
from tests import factories as f


def _stored_image(key: str) -> Image.Image:
    with default_storage.open(key, "rb") as fh:
        image = Image.open(io.BytesIO(fh.read()))
        image.load()
    return image


def _assert_strip_holds_the_frames(candidate: Candidate) -> None:
    """The stored strip is frame_count frames wide, and frame i of it is frame i, pixel for
    pixel."""
    strip = _stored_image(frame_strip_key(candidate.frames_prefix))
    w, h = candidate.width, candidate.height
    assert (strip.mode, strip.size) == ("RGBA", (w * candidate.frame_count, h))
    for i in range(candidate.frame_count):
        frame = _stored_image(f"{candidate.frames_prefix}frame-{i:03d}.png")
        assert strip.crop((i * w, 0, (i + 1) * w, h)).tobytes() == frame.tobytes()


@pytest.fixture
def saves(monkeypatch) -> list[str]:
    """The keys written to the (folder) storage, in order."""
    written: list[str] = []
    save = FileSystemStorage.save

    def recording(self, name, content, max_length=None):
        written.append(name)
        return save(self, name, content, max_length=max_length)

    monkeypatch.setattr(FileSystemStorage, "save", recording)
    return written


@pytest.mark.django_db
def test_generation_stores_each_animations_strip_beside_its_frames(models):
    source = f.sticker(version=models["sticker-base"], text="a cat")
    batch = generation_batch_create(
        kind="animation",
        sources=[source],
        model_versions=[models["anim-teacher-a"]],
        seeds=[5],
        params={"num_inference_steps": 2, "num_frames": 4, "motion_prompt": "bounces"},
    )
    generation_batch_plan(batch_id=batch.pk)
    [chunk] = GenerationChunk.objects.filter(batch=batch)
    generation_chunk_run(chunk_id=chunk.pk)
    [animation] = Candidate.objects.filter(batch=batch)
    assert animation.frame_count == 4
    _assert_strip_holds_the_frames(animation)


@pytest.mark.django_db
def test_a_missing_strip_is_made_from_the_stored_frames_once(saves):
    # given: an animation stored with frames and no strip (as before strips, or imported)
    animation = f.animation(source=f.sticker(), frames=5)
    key = frame_strip_key(animation.frames_prefix)
    assert key == f"{animation.frames_prefix}strip.png"
    assert not default_storage.exists(key)
    saves.clear()
    # when
    assert frame_strip_ensure(frames_prefix=animation.frames_prefix, frame_count=5) == key
    # then
    # written beside its key and committed by name: nobody reads a part of it
    assert saves == [staging_key(key)]
    assert not default_storage.exists(staging_key(key))
    _assert_strip_holds_the_frames(animation)
    stored = default_storage.open(key).read()
    # and: asked again, it is found, not written again
    assert frame_strip_ensure(frames_prefix=animation.frames_prefix, frame_count=5) == key
    assert saves == [staging_key(key)]
    assert default_storage.open(key).read() == stored


@pytest.mark.django_db
def test_no_strip_when_a_frame_is_missing(saves):
    animation = f.animation(source=f.sticker(), frames=3)
    default_storage.delete(f"{animation.frames_prefix}frame-002.png")
    saves.clear()
    assert frame_strip_ensure(frames_prefix=animation.frames_prefix, frame_count=3) is None
    assert saves == []
    assert not default_storage.exists(frame_strip_key(animation.frames_prefix))


@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_for_a_missing_strip_store_it_once(saves, monkeypatch):
    # given: an animation without a strip, and a storage slow to write, so that a second
    # request arrives while the first is still storing
    animation = f.animation(source=f.sticker(), frames=4)
    key = frame_strip_key(animation.frames_prefix)
    saves.clear()
    recording = FileSystemStorage.save
    first_saving = threading.Event()

    def slow(self, name, content, max_length=None):
        first_saving.set()
        time.sleep(0.3)
        return recording(self, name, content, max_length=max_length)

    monkeypatch.setattr(FileSystemStorage, "save", slow)
    results: list = []

    def request(wait_for_first: bool) -> None:
        try:
            if wait_for_first:
                assert first_saving.wait(10)
            results.append(frame_strip_ensure(frames_prefix=animation.frames_prefix, frame_count=4))
        finally:
            connection.close()

    # when: the second asks while the first stores
    threads = [threading.Thread(target=request, args=(w,)) for w in (False, True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # then: both get the strip; it was stored once
    assert results == [key, key]
    assert saves == [staging_key(key)]
    _assert_strip_holds_the_frames(animation)


def test_frames_of_different_sizes_make_no_strip():
    with pytest.raises(ValueError) as caught:
        encode_frame_strip([Image.new("RGBA", (4, 4)), Image.new("RGBA", (4, 5))])
    assert str(caught.value) == "frames have to share one size but have sizes [(4, 4), (4, 5)]."
    with pytest.raises(ValueError) as caught:
        encode_frame_strip([])
    assert str(caught.value) == "`frames` has to contain at least one frame."

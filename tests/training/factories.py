"""Published dataset versions with real files, made directly as rows (the curation services'
build path is tested there): stickers and animations stored in the test's storage, a rule, a
version and its manifest entries, so ``dataset_version_local_copy`` exports them for real."""

import hashlib
import itertools

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from generation.models import Candidate, Prompt, PromptSet
from generation.pipelines import encode_animated_webp, encode_png, sha256_hex
from tests.training.exports import sticker
from training_bridge.models import DatasetEntry, DatasetRule, DatasetVersion

_counter = itertools.count(1)


def _store(key: str, data: bytes) -> str:
    default_storage.save(key, ContentFile(data))
    return key


def prompt_set(texts: list[str], *, held_out: bool = False, name: str | None = None) -> PromptSet:
    ps = PromptSet.objects.create(name=name or f"prompts-{next(_counter)}", is_held_out=held_out)
    Prompt.objects.bulk_create(
        [Prompt(prompt_set=ps, position=i, text=t) for i, t in enumerate(texts)]
    )
    return ps


def sticker_candidate(model_version, prompt: Prompt, *, seed: int, index: int) -> Candidate:
    data = encode_png(sticker(index))
    key = _store(f"candidates/factory/{model_version.pk}/{prompt.pk}-{seed}.png", data)
    return Candidate.objects.create(
        kind="sticker",
        model_version=model_version,
        prompt=prompt,
        seed=seed,
        raw_prompt=prompt.text,
        file=key,
        width=64,
        height=64,
        file_size=len(data),
        sha256=sha256_hex(data),
    )


def animation_candidate(
    model_version, source: Candidate, *, seed: int, frames: int = 8
) -> Candidate:
    index = source.seed + seed
    images = [sticker(index, shift=2 * f) for f in range(frames)]
    data = encode_animated_webp(images, fps=8)
    key = f"candidates/factory/{model_version.pk}/{source.pk}-{seed}.webp"
    prefix = key.removesuffix(".webp") + "/"
    for f, image in enumerate(images):
        _store(f"{prefix}frame-{f:03d}.png", encode_png(image))
    _store(key, data)
    return Candidate.objects.create(
        kind="animation",
        model_version=model_version,
        prompt=source.prompt,
        source=source,
        seed=seed,
        raw_prompt=source.raw_prompt,
        motion_prompt="slides right",
        file=key,
        frames_prefix=prefix,
        width=64,
        height=64,
        frame_count=frames,
        file_size=len(data),
        sha256=sha256_hex(data),
        motion_score=0.2,
    )


def dataset_version(
    models: dict,
    *,
    purpose: str,
    kind: str = "image",
    train: int = 4,
    validation: int = 2,
    status: str = "published",
    teachers: tuple[str, ...] = ("anim-teacher-a", "anim-teacher-b"),
) -> DatasetVersion:
    """A version of ``train`` + ``validation`` entries, published unless ``status`` says."""
    n = next(_counter)
    texts = [f"a sticker of disc {n}-{i}" for i in range(train + validation)]
    ps = prompt_set(texts)
    prompts = list(ps.prompts.order_by("position"))
    base = models["sticker-base"]
    candidates = []
    for i, prompt in enumerate(prompts):
        still = sticker_candidate(base, prompt, seed=i, index=n + i)
        if kind == "image":
            candidates.append((still, None))
        else:
            teacher = models[teachers[i % len(teachers)]] if teachers else models["anim-teacher-a"]
            candidates.append((animation_candidate(teacher, still, seed=i), teacher))
    rule = DatasetRule.objects.create(name=f"rule-{purpose}-{n}", purpose=purpose, kind=kind)
    manifest = hashlib.sha256(f"{purpose}-{kind}-{n}".encode()).hexdigest()
    version = DatasetVersion.objects.create(
        rule=rule,
        number=1,
        purpose=purpose,
        kind=kind,
        status=status,
        rule_snapshot={"name": rule.name},
        manifest_sha256=manifest,
        entry_count=train + validation,
        train_count=train,
        validation_count=validation,
        published_at=timezone.now() if status == "published" else None,
    )
    entries = []
    for position, (candidate, teacher) in enumerate(candidates):
        animated = candidate.kind == "animation"
        entries.append(
            DatasetEntry(
                version=version,
                position=position,
                candidate=candidate,
                split="train" if position < train else "validation",
                caption=candidate.motion_prompt if animated else candidate.raw_prompt,
                file_key=candidate.file,
                file_sha256=candidate.sha256,
                file_ext="webp" if animated else "png",
                label=True,
                confidence=1.0,
                n_judgments=3,
                model_version_name=candidate.model_version.name,
                seed=candidate.seed,
                prompt_text=candidate.raw_prompt,
                teacher=teacher.name
                if teacher is not None and purpose == "teacher_selection"
                else "",
                source_candidate=candidate.source,
                source_file_key=candidate.source.file if animated else "",
                frames_prefix=candidate.frames_prefix,
                frame_count=candidate.frame_count,
                motion_score=candidate.motion_score,
            )
        )
    DatasetEntry.objects.bulk_create(entries)
    return version

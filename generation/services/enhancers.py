"""Prompt enhancers: register one, choose one for a prompt set, and build a template enhancer.

A batch applies its enhancer inside the generation task (``generation.services.chunks``); the
batch picks it when it is created (``generation.services.batches``): the one it names, else its
prompt set's.
"""

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from generation.models import EnhancerKind, PromptEnhancer, PromptSet
from generation.pipelines.enhancers import (
    EnhancerLoadError,
    TemplateEnhancer,
    check_max_new_tokens,
    check_style_phrases,
    check_template,
    load_text_generation_enhancer,
)
from stickerloop.roles import Role, has_role


def template_enhancer(enhancer: PromptEnhancer) -> TemplateEnhancer:
    """The template enhancer ``enhancer`` describes (its kind is ``template``)."""
    return TemplateEnhancer(enhancer.template, tuple(enhancer.style_phrases))


def _check_text_generation(*, uri: str, template: str, max_new_tokens: int) -> dict:
    """Load the model folder on the CPU, as a worker will; the loader's reason on failure.

    Loading a real model takes seconds and its size in memory, once, at registration: a folder
    that does not load would otherwise fail every batch that names the enhancer.
    """
    try:
        load_text_generation_enhancer(
            uri, template=template, max_new_tokens=max_new_tokens, device="cpu"
        )
    except EnhancerLoadError as exc:
        return {"uri": [str(exc)]}
    except ValueError as exc:
        # Template and token range were checked before: the tokens leave no room for a prompt.
        return {"max_new_tokens": [str(exc)]}
    return {}


def prompt_enhancer_create(
    *,
    name: str,
    kind: str,
    template: str,
    style_phrases: list[str] | tuple[str, ...] = (),
    uri: str = "",
    max_new_tokens: int = 64,
    description: str = "",
    created_by: AbstractBaseUser | None = None,
) -> PromptEnhancer:
    """Register a template enhancer, or a text-generation enhancer whose folder loads.

    Every problem is a ValidationError keyed by the field; nothing is stored then. A
    text-generation enhancer loads a folder of the server's into memory, so only ML engineers
    register one, as they register model versions (PermissionDenied for anyone else).
    """
    if kind not in EnhancerKind.values:
        raise ValidationError(
            {"kind": [f"Unknown enhancer kind {kind!r}: use template or text_generation."]}
        )
    if (
        kind == EnhancerKind.TEXT_GENERATION
        and created_by is not None
        and not has_role(created_by, Role.ML_ENGINEER)
    ):
        raise PermissionDenied(
            "Only ML engineers register text-generation enhancers: they load a model folder."
        )
    errors: dict[str, list[str]] = {}
    try:
        check_template(template)
    except ValueError as exc:
        errors["template"] = [str(exc)]
    phrases: tuple[str, ...] = ()
    uri = (uri or "").strip()
    if kind == EnhancerKind.TEMPLATE:
        try:
            phrases = check_style_phrases(style_phrases)
        except ValueError as exc:
            errors["style_phrases"] = [str(exc)]
        if uri:
            errors["uri"] = ["Only a text-generation enhancer reads a model folder."]
    else:
        if style_phrases:
            errors["style_phrases"] = ["Only a template enhancer appends style phrases."]
        try:
            check_max_new_tokens(max_new_tokens)
        except ValueError as exc:
            errors["max_new_tokens"] = [str(exc)]
        if not uri:
            errors["uri"] = ["A text-generation enhancer needs the folder of its model."]
    enhancer = PromptEnhancer(
        name=name,
        kind=kind,
        template=template if isinstance(template, str) else "",
        style_phrases=list(phrases),
        uri=uri,
        max_new_tokens=max_new_tokens if kind == EnhancerKind.TEXT_GENERATION else 64,
        description=description,
        created_by=created_by,
    )
    try:
        enhancer.full_clean(exclude=[*errors, "template", "max_new_tokens"])
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if kind == EnhancerKind.TEXT_GENERATION and not errors:
        # Only a request that is otherwise right pays for loading the model.
        errors.update(
            _check_text_generation(uri=uri, template=template, max_new_tokens=max_new_tokens)
        )
    if errors:
        raise ValidationError(errors)
    # The checks above ran outside any transaction: loading a real model takes seconds, and no
    # connection should sit in an open transaction meanwhile.
    with transaction.atomic():
        enhancer.save()
    return enhancer


@transaction.atomic
def prompt_set_enhancer_set(*, prompt_set: PromptSet, enhancer: PromptEnhancer | None) -> PromptSet:
    """Choose the enhancer new batches of ``prompt_set`` apply (None: none). Batches made
    before keep the enhancer they were made with."""
    prompt_set = PromptSet.objects.select_for_update().get(pk=prompt_set.pk)
    prompt_set.enhancer = enhancer
    prompt_set.save(update_fields=["enhancer"])
    return prompt_set

"""Pages for curators and engineers: batches with live progress, and the candidate gallery."""

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from generation import selectors
from generation.forms import PromptEnhancerForm
from generation.models import (
    BatchKind,
    BatchStatus,
    ChunkStatus,
    ModelKind,
    ModelVersion,
    PromptEnhancer,
    PromptSet,
)
from generation.services.batches import (
    EnhancerChoice,
    generation_batch_create,
    motion_prompts_parse,
)
from generation.services.enhancers import (
    prompt_enhancer_create,
    prompt_set_enhancer_set,
    template_enhancer,
)
from generation.services.prompts import (
    prompt_file_is_large,
    prompt_file_size_check,
    prompt_import_create,
    prompt_set_import,
)
from stickerloop.ids import parse_id
from stickerloop.list_filters import list_filter_apply, list_filters, list_page
from stickerloop.roles import Role, role_required

STAFF = (Role.CURATOR, Role.ML_ENGINEER)


@role_required(*STAFF)
def batch_list(request):
    context = list_page(request.GET, selectors.batch_list(), statuses=BatchStatus.values)
    return render(
        request,
        "generation/batch_list.html",
        context,
        status=400 if context["errors"] else 200,
    )


def _batch_context(pk: int) -> dict:
    batch = get_object_or_404(selectors.batch_list(), pk=pk)
    return {
        "batch": batch,
        "failed_chunks": batch.chunks.select_related("model_version").filter(
            status=ChunkStatus.FAILED
        ),
        "candidates": selectors.candidate_list(batch=batch.pk)[:48],
    }


@role_required(*STAFF)
def batch_detail(request, pk: int):
    return render(request, "generation/batch_detail.html", _batch_context(pk))


@role_required(*STAFF)
def batch_live(request, pk: int):
    """The part of the batch page that moves while it runs (status, progress, failed chunks,
    the newest candidates); static/js/live.js polls it until the batch ends."""
    return render(request, "generation/_batch_live.html", _batch_context(pk))


@role_required(*STAFF)
def candidate_gallery(request):
    filters = {
        "batch": parse_id(request.GET.get("batch")),
        "model_version": parse_id(request.GET.get("model_version")),
        "prompt": parse_id(request.GET.get("prompt")),
        "tag": request.GET.get("tag") or None,
        "kind": request.GET.get("kind")
        if request.GET.get("kind") in ("sticker", "animation")
        else None,
    }
    page = Paginator(selectors.candidate_list(**filters), 48).get_page(request.GET.get("page"))
    return render(
        request,
        "generation/gallery.html",
        {
            "page": page,
            "filters": filters,
            "model_versions": selectors.model_version_list(),
            "background": request.GET.get("bg", "checker"),
        },
    )


@role_required(*STAFF)
def model_version_list(request):
    # Model versions have no status: only the search applies.
    context = list_page(request.GET, selectors.model_version_list(), per_page=50)
    return render(
        request,
        "generation/model_versions.html",
        context,
        status=400 if context["errors"] else 200,
    )


# The page lists this many of the latest imports by a task.
PAGE_PROMPT_IMPORTS = 10


@role_required(*STAFF)
def prompt_set_list(request):
    """Prompt sets, with an upload form that imports a text, CSV or JSONL file: at once, or by
    a task for a file over PROMPT_IMPORT_SYNC_BYTES (listed with its progress until it ends)."""
    report = None
    queued = None
    errors: dict = {}
    if request.method == "POST":
        upload = request.FILES.get("file")
        name = request.POST.get("name", "").strip()
        if not name:
            errors["name"] = ["Give the prompt set a name."]
        if upload is None:
            errors["file"] = ["Choose a file to import."]
        if not errors:
            suffix = upload.name.rsplit(".", 1)[-1].lower()
            file_format = {"csv": "csv", "jsonl": "jsonl"}.get(suffix, "text")
            is_held_out = request.POST.get("is_held_out") == "on"
            try:
                prompt_file_size_check(upload.size)
                if prompt_file_is_large(upload.size):
                    queued = prompt_import_create(
                        name=name,
                        file=upload,
                        file_format=file_format,
                        is_held_out=is_held_out,
                        created_by=request.user,
                    )
                else:
                    content = upload.read().decode("utf-8")
                    prompt_set, report = prompt_set_import(
                        name=name,
                        content=content,
                        file_format=file_format,
                        is_held_out=is_held_out,
                        created_by=request.user,
                    )
            except UnicodeDecodeError:
                errors["file"] = ["The file is not UTF-8 text."]
            except ValidationError as exc:
                errors = exc.message_dict
    # Prompt sets have no status: only the search applies.
    filters, filter_errors = list_filters(request.GET, statuses=[])
    qs = selectors.prompt_set_list()
    if not filter_errors:
        qs = list_filter_apply(qs, filters)
    imports = list(selectors.prompt_import_list()[:PAGE_PROMPT_IMPORTS])
    return render(
        request,
        "generation/prompt_sets.html",
        {
            "page": Paginator(qs, 25).get_page(request.GET.get("page")),
            "filters": filters,
            "filter_errors": filter_errors,
            "enhancers": selectors.prompt_enhancer_list(),
            "report": report,
            "queued": queued,
            "imports": imports,
            "importing": any(not i.is_finished for i in imports),
            "errors": errors,
        },
        status=400 if filter_errors else 200,
    )


@require_POST
@role_required(*STAFF)
def prompt_set_enhancer(request, pk: int):
    """Choose the enhancer of a prompt set's new batches (empty: none)."""
    prompt_set = get_object_or_404(PromptSet, pk=pk)
    chosen = parse_id(request.POST.get("enhancer"))
    enhancer = get_object_or_404(PromptEnhancer, pk=chosen) if chosen else None
    prompt_set_enhancer_set(prompt_set=prompt_set, enhancer=enhancer)
    return redirect("prompt-set-list")


# The prompt an enhancers page example enhances.
EXAMPLE_PROMPT = "a red cat"


@role_required(*STAFF)
def prompt_enhancer_list(request):
    """Prompt enhancers, each template with an example, and the form that registers one."""
    form = PromptEnhancerForm(request.POST or None, initial={"kind": "template"})
    if request.method == "POST" and form.is_valid():
        try:
            prompt_enhancer_create(**form.cleaned_data, created_by=request.user)
        except PermissionDenied as exc:
            form.add_error("kind", str(exc))
        except ValidationError as exc:
            for field, problems in exc.message_dict.items():
                for problem in problems:
                    form.add_error(field if field in form.fields else None, problem)
        else:
            return redirect("prompt-enhancer-list")
    # Enhancers have no status: only the search applies.
    filters, errors = list_filters(request.GET, statuses=[])
    qs = selectors.prompt_enhancer_list()
    if not errors:
        qs = list_filter_apply(qs, filters)
    page = Paginator(qs, 25).get_page(request.GET.get("page"))
    enhancers = [
        {
            "enhancer": e,
            "example": template_enhancer(e).enhance([EXAMPLE_PROMPT])[0]
            if e.kind == "template"
            else "",
        }
        for e in page
    ]
    return render(
        request,
        "generation/prompt_enhancers.html",
        {
            "form": form,
            "page": page,
            "enhancers": enhancers,
            "example_prompt": EXAMPLE_PROMPT,
            "filters": filters,
            "errors": errors,
        },
        status=400 if errors else 200,
    )


def _enhancer_choice(value: str) -> PromptEnhancer | EnhancerChoice | None:
    """The batch form's enhancer: empty for the prompt set's, "none", or an enhancer's id."""
    if value == "none":
        return None
    if not value:
        return EnhancerChoice.PROMPT_SET
    chosen = parse_id(value)
    enhancer = PromptEnhancer.objects.filter(pk=chosen).first() if chosen else None
    if enhancer is None:
        raise ValidationError({"enhancer": [f"No prompt enhancer {value!r}."]})
    return enhancer


@role_required(*STAFF)
def batch_create(request):
    """Ask for a sticker batch from a prompt set; the same checks as the API apply."""
    errors: dict = {}
    if request.method == "POST":
        try:
            seeds = [int(s) for s in request.POST.get("seeds", "").replace(",", " ").split()]
        except ValueError:
            seeds = None
            errors["seeds"] = ["Seeds are whole numbers separated by spaces or commas."]
        params = {}
        for name, cast in (
            ("num_inference_steps", int),
            ("guidance_scale", float),
            ("width", int),
            ("height", int),
        ):
            raw = request.POST.get(name, "").strip()
            if raw:
                try:
                    params[name] = cast(raw)
                except ValueError:
                    errors[f"params.{name}"] = ["Must be a number."]
        if not errors:
            try:
                batch = generation_batch_create(
                    kind="sticker",
                    name=request.POST.get("name", ""),
                    prompt_set=PromptSet.objects.filter(
                        pk=request.POST.get("prompt_set") or 0
                    ).first(),
                    model_versions=list(
                        ModelVersion.objects.filter(pk__in=request.POST.getlist("model_versions"))
                    ),
                    seeds=seeds,
                    params=params,
                    enhancer=_enhancer_choice(request.POST.get("enhancer", "")),
                    requested_by=request.user,
                )
            except ValidationError as exc:
                errors = exc.message_dict
            else:
                return redirect("batch-detail", pk=batch.pk)
    return render(
        request,
        "generation/batch_create.html",
        {
            "errors": errors,
            "prompt_sets": selectors.prompt_set_list(),
            "model_versions": selectors.model_version_list(kind=ModelKind.IMAGE),
            "enhancers": selectors.prompt_enhancer_list(),
            "form": request.POST,
        },
    )


def _ids(raw: str) -> list[int] | None:
    """Whole numbers (ids, seeds) separated by spaces or commas; None when a part is not one.
    ASCII digits only (``"²".isdigit()`` is true, but ``int`` refuses it); no length cap here,
    since a seed may take 19 digits: the services check each number's range and say so."""
    parts = raw.replace(",", " ").split()
    if not all(part.isascii() and part.isdigit() for part in parts):
        return None
    return [int(part) for part in parts]


# Where another page (a campaign's passing stickers) leaves the ids of stickers to animate for
# the animation batch page's next visit: thousands of ids overflow a URL (gunicorn takes 4 KB).
SESSION_SOURCES = "animation_batch_sources"
# The animation form's number fields: (name, cast).
ANIMATION_PARAMS = (("num_frames", int), ("num_inference_steps", int), ("fps", int))
SOURCE_MODES = ("stickers", "dataset_version")


def _animation_sources(post, errors: dict) -> list | None:
    """The chosen stickers or a dataset version's, for the animation form; None where none were
    chosen (the motion prompts' stickers then) or the choice is wrong (``errors`` says why)."""
    if post.get("source_mode") == "dataset_version":
        raw = post.get("dataset_version", "").strip()
        version_id = parse_id(raw)
        if version_id is None:
            errors["dataset_version"] = ["Give a dataset version's id."]
            return None
        stickers = selectors.dataset_version_stickers(version_id=version_id)
        if not stickers:
            errors["dataset_version"] = [f"Dataset version {raw} holds no stickers."]
            return None
        return stickers
    ids = _ids(post.get("stickers", ""))
    if ids is None:
        errors["stickers"] = ["Sticker ids are whole numbers separated by spaces or commas."]
        return None
    found = selectors.candidates_by_id(ids=ids)
    missing = [str(i) for i in dict.fromkeys(ids) if i not in found]
    if missing:
        errors["stickers"] = [f"No candidate {', '.join(missing)}."]
        return None
    return [found[i] for i in dict.fromkeys(ids)] or None


@role_required(*STAFF)
def animation_batch_create(request):
    """Ask for an animation batch: chosen stickers (ticked in the gallery or typed) or a
    dataset version's, each with its own motion prompt from a CSV list where it has one, by
    one or more teachers; the same checks as the API apply, and a bad line queues nothing."""
    errors: dict = {}
    form = request.POST
    if request.method == "POST":
        seeds = _ids(form.get("seeds", ""))
        if not seeds:
            errors["seeds"] = ["Seeds are whole numbers separated by spaces or commas."]
        params = {}
        if default := form.get("motion_prompt", "").strip():
            params["motion_prompt"] = default
        for name, cast in ANIMATION_PARAMS:
            raw = form.get(name, "").strip()
            if raw:
                try:
                    params[name] = cast(raw)
                except ValueError:
                    errors[f"params.{name}"] = ["Must be a whole number."]
        sources = _animation_sources(form, errors)
        content = form.get("motion_prompts", "")
        upload = request.FILES.get("motion_prompts_file")
        motion_prompts = []
        try:
            if upload is not None:
                content = upload.read().decode("utf-8")
            motion_prompts = motion_prompts_parse(content=content)
        except UnicodeDecodeError:
            errors["motion_prompts"] = ["The file is not UTF-8 text."]
        except ValidationError as exc:
            errors.update(exc.message_dict)
        if not errors:
            try:
                batch = generation_batch_create(
                    kind=BatchKind.ANIMATION,
                    name=form.get("name", ""),
                    sources=sources,
                    motion_prompts=motion_prompts,
                    model_versions=list(
                        ModelVersion.objects.filter(
                            pk__in=_ids(" ".join(form.getlist("model_versions"))) or []
                        )
                    ),
                    seeds=seeds,
                    params=params,
                    requested_by=request.user,
                )
            except ValidationError as exc:
                errors = exc.message_dict
            else:
                return redirect("batch-detail", pk=batch.pk)
    else:
        # Stickers ticked in the gallery arrive as ?sources=1&sources=2; a campaign's passing
        # stickers, too many for a URL, in the session.
        ticked = [s for s in request.GET.getlist("sources") if parse_id(s) is not None]
        passed = [str(i) for i in request.session.pop(SESSION_SOURCES, [])]
        form = {"stickers": " ".join(dict.fromkeys(ticked + passed))}
    return render(
        request,
        "generation/animation_batch_create.html",
        {
            "errors": errors,
            "teachers": selectors.model_version_list(kind=ModelKind.ANIMATION).filter(
                is_active=True
            ),
            "form": form,
            "chosen_teachers": form.getlist("model_versions") if request.method == "POST" else [],
        },
    )

"""Curation pages: rules with their preview grid, versions, diffs, exports with progress bars,
weak corpora. Writes go through the services; a refused action comes back as a message."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from stickerloop.errors import ServiceConflict, validation_error_detail
from stickerloop.ids import parse_id
from stickerloop.list_filters import list_filter_apply, list_filters, list_page
from stickerloop.roles import Role, role_required
from training_bridge import selectors
from training_bridge.exports.create import DEFAULT_SHARD_SIZE, dataset_exports_create
from training_bridge.forms import (
    ConditionFormSet,
    RuleForm,
    condition_initial,
    question_choices,
    rule_initial,
)
from training_bridge.models import (
    DatasetExport,
    DatasetPurpose,
    DatasetRule,
    DatasetVersion,
    ExportFormat,
    TaskStatus,
    VersionStatus,
)
from training_bridge.rules import (
    dataset_rule_create,
    dataset_rule_update,
    rule_spec_check,
    rule_values,
)
from training_bridge.versions import (
    dataset_version_build,
    dataset_version_retire,
)

STAFF = (Role.CURATOR, Role.ML_ENGINEER)


def _error_text(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        detail = validation_error_detail(exc)
        if isinstance(detail, dict):
            return " ".join(f"{k}: {' '.join(v)}" for k, v in detail.items())
        return " ".join(detail)
    return str(exc)


@role_required(*STAFF)
def rule_list(request):
    # Rules have no status: only the search applies.
    context = list_page(request.GET, selectors.dataset_rule_list())
    return render(
        request,
        "training_bridge/rule_list.html",
        context,
        status=400 if context["errors"] else 200,
    )


@role_required(*STAFF)
def rule_detail(request, pk: int):
    rule = get_object_or_404(selectors.dataset_rule_list(), pk=pk)
    preview, problem = None, ""
    try:
        spec = rule_spec_check(values=rule_values(rule))
        preview = selectors.dataset_rule_preview(spec=spec)
    except ValidationError as exc:
        problem = _error_text(exc)
    return render(
        request,
        "training_bridge/rule_detail.html",
        {
            "rule": rule,
            "preview": preview,
            "problem": problem,
            "versions": selectors.dataset_version_list(rule=rule.pk)[:50],
            "background": request.GET.get("bg", "checker"),
        },
    )


def _rule_errors(form: RuleForm, rows: list, exc: ValidationError) -> None:
    """Put the service's problems beside the fields they name: ``conditions.<n>.<field>`` on
    the form row that condition came from (``rows[n]``), other fields on the rule form."""
    for name, problems in exc.message_dict.items():
        parts = name.split(".")
        if parts[0] == "conditions" and len(parts) > 1 and parts[1].isdigit():
            row = rows[int(parts[1])]
            field = parts[2] if len(parts) > 2 and parts[2] in row.fields else None
            for problem in problems:
                row.add_error(field, problem)
            continue
        field = name if name in form.fields else None
        for problem in problems:
            form.add_error(field, problem if field else f"{name}: {problem}")


def _rule_input(data, rule: DatasetRule | None, *, named: bool = True):
    """The rule form and its condition rows, bound to ``data`` (unbound, with ``rule``'s
    settings, when ``data`` is None), and the settings they give as the rule service takes
    them: ``(form, conditions, rows, values)``; ``values`` is None while a field is refused
    (the field says why) and ``rows`` are the filled condition rows, in order. A preview
    needs no name (``named=False``)."""
    form = RuleForm(data, initial=rule_initial(rule) if rule else {})
    form.fields["name"].required = named
    conditions = ConditionFormSet(
        data,
        initial=[condition_initial(c) for c in rule.conditions] if rule else None,
        prefix="conditions",
        form_kwargs={"questions": question_choices()},
    )
    if data is None or not (form.is_valid() and conditions.is_valid()):
        return form, conditions, [], None
    rows = [row for row in conditions if row.condition() is not None]
    values = {
        **form.cleaned_data,
        "campaigns": list(form.cleaned_data["campaigns"]),
        "weak_sources": list(form.cleaned_data["weak_sources"]),
        "conditions": [row.condition() for row in rows],
    }
    return form, conditions, rows, values


@role_required(Role.CURATOR)
def rule_form(request, pk: int | None = None):
    """Create a rule, or change one (``pk``). "Preview" runs the unsaved settings through the
    engine and shows the funnel (static/js/rule_preview.js keeps it current as settings change,
    through ``rule_form_preview``); "Save" stores them. Refused settings come back beside their
    fields and nothing is stored."""
    rule = get_object_or_404(DatasetRule, pk=pk) if pk is not None else None
    data = request.POST if request.method == "POST" else None
    form, conditions, rows, values = _rule_input(data, rule)
    preview = None
    if values is not None:
        try:
            if "preview" in data:
                preview = selectors.dataset_rule_preview(spec=rule_spec_check(values=values))
            elif rule is None:
                rule = dataset_rule_create(values=values, created_by=request.user)
                messages.success(request, f"Rule {rule.name!r} created.")
                return redirect("dataset-rule-detail", pk=rule.pk)
            else:
                dataset_rule_update(rule=rule, changes=values)
                messages.success(request, "Saved; versions built before keep their settings.")
                return redirect("dataset-rule-detail", pk=rule.pk)
        except ValidationError as exc:
            _rule_errors(form, rows, exc)
    return render(
        request,
        "training_bridge/rule_form.html",
        {
            "form": form,
            "conditions": conditions,
            "rule": rule,
            "preview": preview,
            "title": f"Edit rule {rule.name}" if rule else "New dataset rule",
        },
    )


def _problems(form: RuleForm, conditions) -> list[str]:
    """Every refusal on the form, as the preview lists them: the field's label first."""
    problems = [
        f"{form[name].label if name in form.fields else 'Rule'}: {e}"
        for name, errors in form.errors.items()
        for e in errors
    ]
    problems += [f"Conditions: {e}" for e in conditions.non_form_errors()]
    for number, row in enumerate(conditions.forms, start=1):
        for name, errors in row.errors.items():
            where = f", {row[name].label.lower()}" if name in row.fields else ""
            problems += [f"Condition {number}{where}: {e}" for e in errors]
    return problems


@require_POST
@role_required(Role.CURATOR)
def rule_form_preview(request):
    """The rule form's funnel for the settings as they stand, unsaved: what each condition
    keeps in turn and the entries at the end, or what stops the rule from running. The form's
    script (static/js/rule_preview.js) posts the whole form here as it changes. Reads only:
    ``selectors.dataset_rule_preview``, as the Preview button and the API's draft preview."""
    form, conditions, rows, values = _rule_input(request.POST, None, named=False)
    preview = None
    if values is not None:
        try:
            preview = selectors.dataset_rule_preview(
                spec=rule_spec_check(values=values), sample_size=0
            )
        except ValidationError as exc:
            _rule_errors(form, rows, exc)
    return render(
        request,
        "training_bridge/_rule_preview.html",
        {"preview": preview, "problems": [] if preview else _problems(form, conditions)},
    )


@require_POST
@role_required(Role.CURATOR)
def rule_build(request, pk: int):
    rule = get_object_or_404(DatasetRule, pk=pk)
    try:
        version, created = dataset_version_build(rule=rule, built_by=request.user)
    except (ValidationError, ServiceConflict) as exc:
        messages.error(request, f"Nothing was built. {_error_text(exc)}")
        return redirect("dataset-rule-detail", pk=pk)
    if not created:
        messages.info(request, f"Nothing changed since version {version.number}: same manifest.")
    return redirect("dataset-version-detail", pk=version.pk)


@role_required(*STAFF)
def version_list(request):
    """Versions, newest first; searched by their rule's name or their id, filtered by status
    and purpose (an unknown one is a 400 naming the field, and the list is not filtered)."""
    filters, errors = list_filters(request.GET, statuses=VersionStatus.values)
    purpose = request.GET.get("purpose") or ""
    if purpose and purpose not in DatasetPurpose.values:
        errors["purpose"] = f"Purpose: {purpose!r} is none of {', '.join(DatasetPurpose.values)}."
    qs = selectors.dataset_version_list(purpose=None if errors else purpose or None)
    if not errors:
        qs = list_filter_apply(qs, filters, name_fields=("rule__name",))
    page = Paginator(qs, 25).get_page(request.GET.get("page"))
    return render(
        request,
        "training_bridge/version_list.html",
        {
            "page": page,
            "purposes": DatasetPurpose.choices,
            "filters": {**filters, "purpose": purpose},
            "errors": errors,
            "statuses": VersionStatus.values,
        },
        status=400 if errors else 200,
    )


@role_required(*STAFF)
def version_detail(request, pk: int):
    version = get_object_or_404(selectors.dataset_version_list(), pk=pk)
    entries = selectors.dataset_version_entries(version=version).select_related(
        "candidate", "source_candidate"
    )[:48]
    return render(
        request,
        "training_bridge/version_detail.html",
        {
            "version": version,
            "entries": entries,
            "exports": selectors.dataset_export_list(version=version.pk)[:50],
            "events": selectors.audit_events(version=version.pk)[:100],
            "triggers": selectors.training_triggers(version=version),
            "siblings": selectors.dataset_version_list(rule=version.rule_id).exclude(pk=version.pk),
            "formats": ExportFormat.choices,
            "default_shard_size": DEFAULT_SHARD_SIZE,
            "background": request.GET.get("bg", "checker"),
        },
    )


def _version_action(request, pk: int, action) -> object:
    version = get_object_or_404(DatasetVersion, pk=pk)
    try:
        action(version)
    except (ValidationError, ServiceConflict) as exc:
        messages.error(request, _error_text(exc))
    return redirect("dataset-version-detail", pk=pk)


@require_POST
@role_required(Role.CURATOR)
def version_retire(request, pk: int):
    return _version_action(
        request, pk, lambda v: dataset_version_retire(version=v, retired_by=request.user)
    )


@require_POST
@role_required(*STAFF)
def version_export(request, pk: int):
    """One or several formats, ticked on the version's page, written in one pass."""
    shard = request.POST.get("shard_size") or None
    formats = request.POST.getlist("format")

    def export(version):
        shard_size = parse_id(shard)
        if shard and shard_size is None:
            raise ValidationError({"shard_size": ["Must be a whole number."]})
        dataset_exports_create(
            version=version,
            export_formats=formats,
            shard_size=shard_size if ExportFormat.WEBDATASET in formats else None,
            requested_by=request.user,
        )

    return _version_action(request, pk, export)


@role_required(*STAFF)
def version_diff(request, pk: int, other: int):
    old = get_object_or_404(DatasetVersion.objects.select_related("rule"), pk=pk)
    new = get_object_or_404(DatasetVersion.objects.select_related("rule"), pk=other)
    try:
        diff = selectors.dataset_version_diff(old=old, new=new, limit=200)
    except ValidationError as exc:
        messages.error(request, _error_text(exc))
        return redirect("dataset-version-detail", pk=pk)
    return render(request, "training_bridge/version_diff.html", {"diff": diff})


def _export_list_context(request) -> dict:
    """The export list's page of rows, searched by their version's rule name or their id and
    filtered by status; a refused query lists them all, with its ``errors``."""
    return list_page(
        request.GET,
        selectors.dataset_export_list(),
        statuses=TaskStatus.values,
        name_fields=("version__rule__name",),
    )


@role_required(*STAFF)
def export_list(request):
    context = _export_list_context(request)
    return render(
        request,
        "training_bridge/export_list.html",
        context,
        status=400 if context["errors"] else 200,
    )


@role_required(*STAFF)
def export_list_live(request):
    """The export list's rows (the same page of them, under the page's query), polled by
    static/js/live.js. It answers 200 even for a refused query, with the rows the page shows
    then (all of them), so that they keep moving. A list has no final state (a new export may
    start any time), so the fragment never says finished: the script backs off to one request
    every 30 s while nothing moves."""
    return render(request, "training_bridge/_export_list_live.html", _export_list_context(request))


@role_required(*STAFF)
def export_detail(request, pk: int):
    export = get_object_or_404(DatasetExport.objects.select_related("version__rule"), pk=pk)
    return render(
        request,
        "training_bridge/export_detail.html",
        {"export": export, "events": selectors.audit_events(export=export.pk)[:100]},
    )


@role_required(*STAFF)
def weak_source_list(request):
    # Weak sources have no status (their imports have, listed below them): only the search.
    filters, errors = list_filters(request.GET, statuses=[])
    qs = selectors.weak_source_list()
    if not errors:
        qs = list_filter_apply(qs, filters)
    return render(
        request,
        "training_bridge/weak_sources.html",
        {
            "page": Paginator(qs, 25).get_page(request.GET.get("page")),
            "filters": filters,
            "errors": errors,
            "imports": selectors.weak_import_list()[:50],
        },
        status=400 if errors else 200,
    )

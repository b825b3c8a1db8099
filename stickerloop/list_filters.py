"""The search box and status filter of the list pages: one rule for what they accept."""

from django.core.paginator import Paginator
from django.db.models import Q, QuerySet

from stickerloop.ids import parse_id

# Longer search text matches no name here, and a bound keeps the LIKE pattern cheap.
MAX_SEARCH = 200


def list_filters(params, *, statuses: list[str]) -> tuple[dict, dict[str, str]]:
    """The ``q`` and ``status`` of a list page's query string, checked: ``(filters, errors)``
    with an error per field it refuses, in words for the page. A list whose rows have no status
    passes no ``statuses``, and ``status`` is ignored there."""
    search = (params.get("q") or "").strip()
    status = (params.get("status") or "") if statuses else ""
    errors = {}
    if len(search) > MAX_SEARCH:
        errors["q"] = f"Search: at most {MAX_SEARCH} characters, not {len(search)}."
    if status and status not in statuses:
        errors["status"] = f"Status: {status!r} is none of {', '.join(statuses)}."
    return {"q": search, "status": status}, errors


def list_filter_apply(
    qs: QuerySet, filters: dict, *, name_fields: tuple[str, ...] = ("name",)
) -> QuerySet:
    """Rows whose name contains ``q`` (any case) or whose id it is, in ``status`` if given.
    ``name_fields`` is where a row's name lies when it is not its own ``name`` (a dataset
    version's is its rule's: ``("rule__name",)``); with several, any of them may contain it
    (a rater's username or e-mail address)."""
    if filters["q"]:
        match = Q()
        for field in name_fields:
            match |= Q(**{f"{field}__icontains": filters["q"]})
        if (pk := parse_id(filters["q"])) is not None:
            match |= Q(pk=pk)
        qs = qs.filter(match)
    if filters["status"]:
        qs = qs.filter(status=filters["status"])
    return qs


def list_page(params, qs: QuerySet, *, statuses=(), name_fields=("name",), per_page: int = 25):
    """What a list page shows of ``qs``: its searched, filtered page of ``per_page`` rows with
    the ``filters``, ``errors`` and ``statuses`` its template's filter form needs. A refused
    query lists every row, beside the reason; the view answers 400 when there are ``errors``."""
    statuses = list(statuses)
    filters, errors = list_filters(params, statuses=statuses)
    if not errors:
        qs = list_filter_apply(qs, filters, name_fields=name_fields)
    page = Paginator(qs, per_page).get_page(params.get("page"))
    return {"page": page, "filters": filters, "errors": errors, "statuses": statuses}

import hmac

from django.conf import settings
from django.http import Http404, HttpResponse, HttpResponseForbidden
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from stickerloop.metrics.exposition import scrape


@never_cache
@require_safe
def metrics_scrape(request):
    """Prometheus metrics, for a scraper bearing ``STICKERLOOP_METRICS_TOKEN``; 404 while that
    is empty (metrics off), 403 without it."""
    token = settings.METRICS_TOKEN
    if not token:
        raise Http404
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
        return HttpResponseForbidden(
            "A bearer token is needed.", content_type="text/plain; charset=utf-8"
        )
    body, content_type = scrape(request.headers.get("Accept"))
    return HttpResponse(body, content_type=content_type)

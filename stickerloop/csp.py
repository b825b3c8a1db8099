"""The Content-Security-Policy header, on every response.

Pages run only the site's own script and style files: no inline ``<script>``, ``<style>``, ``style``
attribute or ``on…`` handler is executed or applied, so markup injected into a page does nothing
even where escaping failed. Templates pass values to scripts in ``data-`` attributes or with
``json_script`` (a ``<script type="application/json">``, which is data and never runs); progress
bars take their width from a ``data-percent`` attribute through static/css/app.css.

``img-src`` adds ``data:`` (the API docs' Swagger UI draws its icons from data: URLs in its
stylesheet) and CSP_MEDIA_ORIGINS: with a bucket, a media URL answers with a redirect to a
presigned bucket URL, and an image may only load from an origin the policy names. Nothing may
frame the site (``frame-ancestors``, as X-Frame-Options: DENY says to older browsers), load
plugins, move the base URL or post a form elsewhere. JSON and files get the header too: a
stored file opened from our origin runs nothing either.
"""

from django.conf import settings


def content_security_policy(media_origins: list[str]) -> str:
    """The header's value; ``media_origins`` are the origins images may load from besides ours."""
    img_src = " ".join(["'self'", "data:", *media_origins])
    return "; ".join(
        [
            "default-src 'self'",
            f"img-src {img_src}",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        # Built once per process: it depends on settings only.
        self.policy = content_security_policy(settings.CSP_MEDIA_ORIGINS)

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", self.policy)
        return response

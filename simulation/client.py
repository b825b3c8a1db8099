"""The rating API over HTTP, as the rating screen's script calls it, with an API token.

The client reads its endpoints from the rating configuration (``GET
/api/campaigns/<id>/rate/config/``, what the page writes into the screen's script), then calls
them as the script does: the step (submit the current answer and lease more), held items, undo,
and the media URLs the items name.
"""

from __future__ import annotations

import time

import requests

# A request that could not reach the server is sent again: the step and held calls are safe to
# repeat (a submit carries its client id, so a resent one is stored once).
RETRIES = 5


class RatingRefused(Exception):
    """The server refused a call (4xx): ``status`` and its message in words."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def describe(data) -> str:
    """A refusal's body in words, as the rating screen shows it."""
    if not isinstance(data, dict):
        return "The server refused the request."
    if "detail" in data:
        return str(data["detail"])
    return " · ".join(
        f"{field}: {' '.join(map(str, problems if isinstance(problems, list) else [problems]))}"
        for field, problems in data.items()
    )


class RatingClient:
    def __init__(
        self, *, base_url: str, token: str, campaign_id: int, timeout: float = 30.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.campaign_id = campaign_id
        self.timeout = timeout
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Token {token}"
        self.urls: dict[str, str] = {}

    def _send(self, method: str, path: str, *, body=None, retry: bool = True):
        url = path if path.startswith("http") else self.base_url + path
        for attempt in range(RETRIES if retry else 1):
            try:
                response = self.http.request(method, url, json=body, timeout=self.timeout)
            except requests.ConnectionError:
                if not retry or attempt == RETRIES - 1:
                    raise
                time.sleep(0.1 * 2**attempt)
                continue
            if response.status_code >= 500 and retry and attempt < RETRIES - 1:
                time.sleep(0.1 * 2**attempt)
                continue
            return response
        raise AssertionError("unreachable")

    @staticmethod
    def _json(response) -> dict:
        try:
            data = response.json()
        except ValueError:
            data = {"detail": response.text[:200]}
        if response.status_code >= 400:
            raise RatingRefused(response.status_code, describe(data))
        return data

    def config(self) -> dict:
        """The rating configuration; remembers its endpoints for the other calls."""
        data = self._json(self._send("GET", f"/api/campaigns/{self.campaign_id}/rate/config/"))
        self.urls = data["urls"]
        return data

    def held(self) -> list[dict]:
        return self._json(self._send("GET", self.urls["held"]))["items"]

    def step(self, *, fetch: int, submit: dict | None = None) -> dict:
        body: dict = {"fetch": fetch}
        if submit is not None:
            body["submit"] = submit
        return self._json(self._send("POST", self.urls["step"], body=body))

    def undo(self) -> dict:
        # Never resent: a second undo would take back the judgment before the last.
        return self._json(self._send("POST", self.urls["undo"], retry=False))

    def media(self, url: str) -> bytes:
        response = self._send("GET", url)
        if response.status_code != 200:
            raise RatingRefused(
                response.status_code, f"media {url} answered {response.status_code}"
            )
        return response.content

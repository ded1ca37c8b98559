"""A logged-in HTTP session against a running `make demo` (the demo end-to-end tests share it)."""

from __future__ import annotations

import http.cookiejar
import urllib.parse
import urllib.request


class Browser:
    """Cookies and Django's CSRF token, enough to log in and read a page."""

    def __init__(self, base: str, timeout: float = 10) -> None:
        self.base = base
        self.timeout = timeout
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def get(self, path: str) -> str:
        with self.opener.open(self.base + path, timeout=self.timeout) as response:
            return response.read().decode()

    def login(self, username: str, password: str) -> None:
        self.get("/login/")
        token = next(c.value for c in self.jar if c.name == "csrftoken")
        body = urllib.parse.urlencode({"username": username, "password": password, "csrfmiddlewaretoken": token}).encode()
        request = urllib.request.Request(self.base + "/login/", data=body, headers={"Referer": self.base + "/login/"})
        with self.opener.open(request, timeout=10):
            pass

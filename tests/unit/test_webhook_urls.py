"""Which webhook URLs a subscription accepts, judged without a server."""

from __future__ import annotations

import pytest
from clusterops_server.domain.notifications import MAX_URL_LENGTH, url_problem


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/clusterops",
        "https://hooks.example.com:8443/a?b=c",
        "http://127.0.0.1:9000/hook",
        "http://localhost/hook",
        "http://[::1]:80/hook",
        "https://10.0.0.7/hook",
        "https://example.com/" + "a" * (MAX_URL_LENGTH - len("https://example.com/")),
    ],
)
def test_https_anywhere_and_plain_http_to_loopback_are_accepted(url: str) -> None:
    assert url_problem(url) is None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("", "must be an https:// URL"),
        ("ftp://example.com/x", "must be an https:// URL"),
        ("https://", "must be an https:// URL"),
        ("https://example.com:99999/x", "is not a URL"),
        ("http://example.com/hook", "must use https"),
        ("http://10.0.0.1/hook", "must use https"),
        ("https://user:secret@example.com/hook", "user name or password"),
        ("https://token@example.com/hook", "user name or password"),
        ("https://example.com/hook#part", "#fragment"),
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("https://[fe80::1]/hook", "link-local"),
        ("https://0.0.0.0/hook", "unspecified"),
        ("https://224.0.0.1/hook", "multicast"),
        ("https://example.com/" + "a" * MAX_URL_LENGTH, f"at most {MAX_URL_LENGTH}"),
    ],
)
def test_other_urls_are_refused_saying_why(url: str, problem: str) -> None:
    found = url_problem(url)
    assert found is not None
    assert problem in found

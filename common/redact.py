"""Secrets out of what programs print: the user-info of URLs (``user:password@``) masked.

``redact_url`` for a URL a program shows (settings errors, connection logs, the supervisor's
console); ``redact_urls`` for free text that may quote one (an exception's message). Both are
the same rule, so a URL reads the same wherever it is shown.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["MASK", "redact_url", "redact_urls"]

MASK: Final = "***"

# scheme://userinfo@ -- up to the last '@' before the path, so a password holding '@' is
# masked whole.
_USERINFO: Final = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^\s/?#]*@)")


def redact_url(url: str) -> str:
    """``mqtt://dev:s3cret@host:1883`` -> ``mqtt://dev:***@host:1883``; ``http://tok@h`` ->
    ``http://***@h`` (a lone user-info is as often a token as a name); no user-info: as is."""
    return redact_urls(url)


def redact_urls(text: str) -> str:
    """Every ``scheme://user:password@`` in ``text`` with its user-info masked."""
    return _USERINFO.sub(_mask, text)


def _mask(match: re.Match[str]) -> str:
    userinfo = match["userinfo"][:-1]
    user, colon, _ = userinfo.partition(":")
    keep = colon and user and "@" not in userinfo
    return f"{match['scheme']}{user}:{MASK}@" if keep else f"{match['scheme']}{MASK}@"

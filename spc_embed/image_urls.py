"""Image URLs a browser signs as written: the card's icon and the payment entities' logos.

SPC puts the icon and logo URLs into the client data the browser signs, and
Chrome writes them in its own canonical form (``GURL::spec()``): the host in
lower case, no default port, ``/`` for an empty path, ``.`` and ``..``
segments resolved, some characters percent-encoded and, in older versions,
escaped letters and digits decoded. The verifier compares them with what
initialize sent, exactly (docs/security.md S6, S7), so a URL stored in any
other spelling would make every payment with it fail. Rather than guess each
browser's rewriting, only URLs that every such rewriting leaves unchanged are
accepted; the message says what to change.
"""

from __future__ import annotations

import string

from .origins import DEFAULT_PORTS, HOST_NAME, is_localhost

_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
# Characters browsers copy unchanged into a path (no URL standard or older Chrome version escapes them).
_PATH = _UNRESERVED | frozenset("!$&'()*+,;=:@/%")
# A query: the same and "?", without "'", which the URL standard escapes in the query of an https URL.
_QUERY = (_PATH | {"?"}) - {"'"}
MAX_IMAGE_URL_LENGTH = 64 * 1024


def image_url_problem(url: str, *, local_http: bool = False) -> str | None:
    """What keeps ``url`` from being an image URL a browser signs as written, or None.

    https:// and data:image/ URLs; with ``local_http`` also http:// on
    ``localhost`` (the development setup, a secure context to browsers).
    """
    if not url or len(url) > MAX_IMAGE_URL_LENGTH:
        return f"must be a URL of 1 to {MAX_IMAGE_URL_LENGTH} characters"
    if not all("!" <= c <= "~" for c in url):
        return "must be printable ASCII without spaces (percent-encode other characters)"
    if url.startswith("data:image/"):
        return None  # an opaque path: browsers leave printable ASCII as it is
    scheme, separator, rest = url.partition("://")
    if not separator or scheme not in DEFAULT_PORTS:
        return "must be an https:// URL or a data:image/ URL"
    end = min((i for i in (rest.find(c) for c in "/?#\\") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    problem = _authority_problem(authority, default_port=str(DEFAULT_PORTS[scheme]))
    if problem is None and scheme == "http" and not (local_http and is_localhost(authority.partition(":")[0])):
        problem = "must use https (http only on localhost)"
    return problem or _tail_problem(tail)


def _authority_problem(authority: str, *, default_port: str) -> str | None:
    if "@" in authority:
        return "must not contain a user name or password"
    host, colon, port = authority.partition(":")
    if not HOST_NAME.match(host):
        if HOST_NAME.match(host.lower()):
            return "must write its host name in lower case, as browsers do"
        return "must name its host with a DNS name (international names in their xn-- form)"
    if not host.rsplit(".", 1)[-1][0].isalpha():
        # The URL standard reads a host ending in a number as an IPv4 address, and rewrites most spellings of one.
        return "must name its host with a DNS name, not an IP address"
    if colon:
        if not port.isdigit() or str(int(port)) != port or not 0 < int(port) < 65536:
            return "must have a port of 1 to 65535 without leading zeros"
        if port == default_port:
            return f"must leave out the default port :{default_port}, as browsers do"
    return None


def _tail_problem(tail: str) -> str | None:
    if "#" in tail:
        return "must not have a fragment (#...)"
    path, question, query = tail.partition("?")
    if not path.startswith("/"):
        return "must have a path, at least \"/\" after the host, as browsers write it"
    if not set(path) <= _PATH:
        return f"must percent-encode any of {_listed(set(path) - _PATH)} in its path, as browsers do"
    for segment in path.split("/"):
        if segment.lower().replace("%2e", ".") in (".", ".."):
            return "must not have \".\" or \"..\" segments in its path (browsers resolve them)"
    if question and not set(query) <= _QUERY:
        return f"must percent-encode any of {_listed(set(query) - _QUERY)} in its query, as browsers do"
    return _escape_problem(path) or _escape_problem(query)


def _escape_problem(text: str) -> str | None:
    at = text.find("%")
    while at >= 0:
        digits = text[at + 1:at + 3]
        if len(digits) != 2 or not all(c in string.hexdigits for c in digits):
            return "must write \"%\" as %25 unless it starts a percent-escape of two hex digits"
        if chr(int(digits, 16)) in _UNRESERVED:
            return "must not percent-encode letters, digits or \"-._~\" (some browsers decode them)"
        at = text.find("%", at + 3)
    return None


def _listed(characters: set[str]) -> str:
    return " ".join(sorted(characters))


# The same rules as a JSON Schema (the OpenAPI document's), so generated clients and schema-driven tests agree
# with the checks above; tests/test_image_urls.py holds them to each other.
_LABEL = "[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_HOST_PATTERN = f"(?:{_LABEL}\\.)*[a-z](?:[a-z0-9-]*[a-z0-9])?"
_LOCALHOST_PATTERN = f"(?:{_LABEL}\\.)*localhost"
_PORT_PATTERN = "(?::[1-9][0-9]{0,4})?"
_ESCAPE_PATTERN = "%[0-9A-Fa-f]{2}"
_PATH_PATTERN = f"/(?:[A-Za-z0-9._~!$&'()*+,;=:@/-]|{_ESCAPE_PATTERN})*"
_QUERY_PATTERN = f"(?:\\?(?:[A-Za-z0-9._~!$&()*+,;=:@/?-]|{_ESCAPE_PATTERN})*)?"
_REFUSED_PATTERNS = (
    "^https://[^/?]*:443[/?]", "^http://[^/?]*:80[/?]",  # a default port
    "^https?://[^/?]*:(?:6553[6-9]|655[4-9][0-9]|65[6-9][0-9]{2}|6[6-9][0-9]{3}|[7-9][0-9]{4})[/?]",  # > 65535
    "^https?://[^/?]*(?:/[^/?]*)*/(?:\\.|%2[Ee]){1,2}(?:[/?]|$)",  # a "." or ".." segment
    "^https?://[^%]*(?:%[0-9A-Fa-f]{2}[^%]*)*%(?:3[0-9]|[46][1-9A-Fa-f]|[57][0-9Aa]|2[DdEe]|5[Ff]|7[Ee])",  # ~ %41
)


def image_url_schema(*, local_http: bool = False, max_length: int = MAX_IMAGE_URL_LENGTH) -> dict[str, object]:
    """:func:`image_url_problem`'s rules as a JSON Schema (what it accepts, this schema accepts)."""
    hosts = f"https://{_HOST_PATTERN}" + (f"|http://{_LOCALHOST_PATTERN}" if local_http else "")
    return {
        "type": "string", "minLength": 1, "maxLength": max_length,
        "pattern": f"^(?:data:image/[!-~]*|(?:{hosts}){_PORT_PATTERN}{_PATH_PATTERN}{_QUERY_PATTERN})$",
        "not": {"anyOf": [{"pattern": pattern} for pattern in _REFUSED_PATTERNS]},
    }

from __future__ import annotations

from html.parser import HTMLParser

import jinja2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates
from starlette.testclient import TestClient

from spc_embed.merchant import install_jinja_globals, issuer_iframe

ALLOW = (
    "payment https://issuer.test; publickey-credentials-create https://issuer.test; "
    "publickey-credentials-get https://issuer.test"
)


def test_renders_allow_for_the_src_origin() -> None:
    assert str(issuer_iframe("https://issuer.test/spc/enroll")) == (
        f'<iframe src="https://issuer.test/spc/enroll" allow="{ALLOW}" title="Set up faster checkout with your bank" '
        'width="100%" height="360"></iframe>'
    )


def test_optional_attributes_and_port_in_origin() -> None:
    markup = issuer_iframe(
        "https://issuer.test:9443/enroll", features=["payment"], width=400, height=300, id="spc", css_class="frame wide"
    )
    assert markup == (
        '<iframe src="https://issuer.test:9443/enroll" allow="payment https://issuer.test:9443" '
        'title="Set up faster checkout with your bank" width="400" height="300" id="spc" class="frame wide"></iframe>'
    )


def test_the_default_title_says_what_the_frame_is_for() -> None:
    assert 'title="Set up faster checkout with your bank"' in issuer_iframe("https://issuer.test/spc/enroll?token=t")
    assert 'title="Confirm your payment with your bank"' in issuer_iframe("https://issuer.test/spc/pay?handle=h")
    assert 'title="Confirm your payment with your bank"' in issuer_iframe("https://issuer.test/x", purpose="payment")
    assert 'title="Zahlung bestätigen"' in issuer_iframe("https://issuer.test/spc/pay", title="Zahlung bestätigen")


@pytest.mark.parametrize("title", ["", "   "])
def test_an_empty_title_is_refused(title: str) -> None:
    with pytest.raises(ValueError, match="an empty title names nothing"):
        issuer_iframe("https://issuer.test/spc/enroll?token=t", title=title)


def test_a_frame_of_unknown_purpose_needs_a_title() -> None:
    with pytest.raises(ValueError, match="say what this frame is for"):
        issuer_iframe("https://issuer.test/elsewhere")
    assert 'title="Card"' in issuer_iframe("https://issuer.test/elsewhere", title="Card")


def test_explicit_issuer_origin_is_used_for_allow() -> None:
    markup = issuer_iframe("https://cdn.issuer.test/enroll", issuer_origin="https://issuer.test", features=["payment"])
    assert 'allow="payment https://issuer.test"' in markup


def parsed_attributes(markup: str) -> dict[str, str | None]:
    """What a browser's tokenizer would see."""
    found: list[tuple[str, list[tuple[str, str | None]]]] = []

    class Parser(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found.append((tag, attrs))

    Parser().feed(markup)
    assert [tag for tag, _ in found] == ["iframe"]
    return dict(found[0][1])


def test_every_attribute_is_escaped() -> None:
    src = 'https://issuer.test/enroll?q="><script>alert(1)</script>&x=1'
    markup = issuer_iframe(src, title="<script>alert(2)</script>", id='a" onload="b', css_class="<c>")
    assert "<script>" not in markup
    assert 'title="&lt;script&gt;alert(2)&lt;/script&gt;"' in markup
    assert parsed_attributes(markup) == {
        "src": src,
        "allow": ALLOW,
        "title": "<script>alert(2)</script>",
        "width": "100%",
        "height": "360",
        "id": 'a" onload="b',
        "class": "<c>",
    }


def test_never_sandboxed() -> None:
    attributes = parsed_attributes(issuer_iframe("https://issuer.test/enroll", id="sandbox", css_class="sandbox"))
    assert "sandbox" not in attributes
    assert attributes["allow"] == ALLOW


@pytest.mark.parametrize("src", ["http://localhost:8000/enroll", "http://issuer.localhost:8001/enroll"])
def test_local_http_is_allowed_for_development(src: str) -> None:
    origin = src.rsplit("/", 1)[0]
    assert f'allow="payment {origin};' in issuer_iframe(src)


@pytest.mark.parametrize(
    "src",
    [
        "http://issuer.test/enroll",
        "javascript:alert(1)",
        "data:text/html,<p>x</p>",
        "/relative/enroll",
        "//issuer.test/enroll",
        " https://issuer.test/enroll",
        "https://user:pw@issuer.test/enroll",
        "https://issuer.test\n/enroll",
    ],
)
def test_insecure_or_odd_src_raises(src: str) -> None:
    with pytest.raises(ValueError):
        issuer_iframe(src)


@pytest.mark.parametrize("origin", ["https://issuer.test/", "issuer.test", "http://issuer.test"])
def test_invalid_issuer_origin_raises(origin: str) -> None:
    with pytest.raises(ValueError):
        issuer_iframe("https://issuer.test/enroll", issuer_origin=origin)


def test_jinja_global_in_starlette_templates_is_not_double_escaped() -> None:
    env = jinja2.Environment(
        loader=jinja2.DictLoader({"page.html": '<main>{{ spc_iframe(src, title=title, features=["payment"]) }}</main>'}),
        autoescape=True,
    )
    templates = Jinja2Templates(env=env)
    install_jinja_globals(templates.env)

    async def page(request: Request) -> Response:
        return templates.TemplateResponse(
            request, "page.html", {"src": "https://issuer.test/enroll?a=1&b=2", "title": "Tom & Jerry's <card>"}
        )

    text = TestClient(Starlette(routes=[Route("/", page)])).get("/").text
    assert text == (
        '<main><iframe src="https://issuer.test/enroll?a=1&amp;b=2" allow="payment https://issuer.test" '
        'title="Tom &amp; Jerry&#39;s &lt;card&gt;" width="100%" height="360"></iframe></main>'
    )


def test_jinja_global_custom_name() -> None:
    env = jinja2.Environment(autoescape=True)
    install_jinja_globals(env, name="issuer_frame")
    assert env.from_string("{{ issuer_frame('https://issuer.test/f', purpose='payment') }}").render().startswith(
        '<iframe src="https://issuer.test/f"'
    )

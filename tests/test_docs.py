"""The threat model in docs/security.md and what cites it stay in step.

An item is defined by a heading ``### W6: …`` in docs/security.md, in an area
whose letter the document's area table lists (``| W | …``). Its section names
the tests that prove it as ``tests/<file>.py::<test function>``.

What counts as a citation of an item, in the files under CITING_DIRS and
docs/ (and nothing else, so prose such as "WebAuthn L3" or "P-256" is never one):

1. a test function named after items: ``def test_w6_…``, ``def test_r2_p1_…``;
2. an explicit reference, the document named right before a list of ids:
   ``docs/security.md A10, S8, T3``, and the old spellings (the document's
   name in capitals without ``docs/``, or the bare word before an id), which
   are also reported as errors (any capital letter counts here, so an id of
   an area the document does not have is caught too);
3. an id inside one line's parentheses: ``(W6)``, ``(A10, A12)``,
   ``(S5, see transactions.py)``, ``(and fits the key, P5)``;
4. an id or list of ids directly followed by a colon: ``# S11: …``,
   ``# T3 and S8: …``;
5. a list of two or more ids, or a range: ``R5-R8, R10``, ``P1, P2``.

In forms 3 to 5 an id is an area letter followed by one or two digits, as a
word of its own. A range ``R1-R4`` cites every id from R1 to R4.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SECURITY_DOC = ROOT / "docs" / "security.md"
CITING_DIRS = ("spc_embed", "tests", "widget", "example_merchant", "scripts", "bench")
TEXT_SUFFIXES = frozenset({".py", ".js", ".mjs", ".html", ".css", ".sh", ".md", ".toml", ".txt", ".cfg", ".ini"})
THIS_FILE = Path(__file__).resolve()

HEADING = re.compile(r"^### ([A-Z]\d{1,2}):", re.MULTILINE)
AREA_ROW = re.compile(r"^\| ([A-Z]) \|", re.MULTILINE)
PROOF = re.compile(r"\b(tests/[\w/]+\.py)::(test_\w+)")
TEST_DEF = re.compile(r"\bdef test_((?:[a-z]\d{1,2}_)+)")
DOC_NAME = r"(?:docs/security\.md|SECURITY\.md|\bSECURITY\b)`?"
PARENTHESES = re.compile(r"\(([^()\n]*)\)")


def id_patterns(letters: str) -> tuple[str, str]:
    """(one item, a list of items) for ids whose letter is one of ``letters``."""
    one = rf"[{letters}]\d{{1,2}}"
    item = rf"(?<![\w-]){one}(?:-{one})?(?![\w-])"
    return item, rf"{item}(?:(?:\s*,\s*|\s+and\s+){item})*"


def expand(text: str) -> list[str]:
    """The ids an item or list names: ``"R1-R3, A4"`` -> R1, R2, R3, A4."""
    ids = []
    for first, last in re.findall(r"([A-Z]\d{1,2})(?:-([A-Z]\d{1,2}))?", text):
        if last and last[0] == first[0] and int(first[1:]) < int(last[1:]):
            ids += [f"{first[0]}{n}" for n in range(int(first[1:]), int(last[1:]) + 1)]
        else:
            ids += [first, last] if last else [first]
    return ids


def citations(text: str, area_letters: str) -> list[tuple[int, str]]:
    """(line number, id) of every citation in ``text``, by the five forms of the module docstring."""
    item, id_list = id_patterns(area_letters)
    _, any_list = id_patterns("A-Z")
    found: list[tuple[int, str]] = []

    def add(position: int, ids_text: str) -> None:
        line = text.count("\n", 0, position) + 1
        found.extend((line, cited) for cited in expand(ids_text))

    for match in TEST_DEF.finditer(text):
        add(match.start(), " ".join(part.upper() for part in match.group(1).split("_") if part))
    for match in re.finditer(rf"{DOC_NAME}\s+({any_list})", text):
        add(match.start(1), match.group(1))
    for match in PARENTHESES.finditer(text):
        for inner in re.finditer(item, match.group(1)):
            add(match.start(1) + inner.start(), inner.group(0))
    for match in re.finditer(rf"({id_list}):", text):
        add(match.start(1), match.group(1))
    ranges = rf"(?<![\w-])[{area_letters}]\d{{1,2}}-[A-Z]\d{{1,2}}(?![\w-])"
    for match in re.finditer(rf"{item}(?:(?:\s*,\s*|\s+and\s+){item})+|{ranges}", text):
        add(match.start(), match.group(0))
    return sorted(set(found))


class Doc:
    """docs/security.md, read once: its areas, its items and each item's proofs."""

    def __init__(self, text: str) -> None:
        self.text = text
        headings = list(HEADING.finditer(text))
        self.ids = [h.group(1) for h in headings]
        self.areas = "".join(sorted(set(AREA_ROW.findall(text)) | {i[0] for i in self.ids}))
        self.sections: dict[str, str] = {}
        for heading, following in zip(headings, [*headings[1:], None], strict=True):
            end = following.start() if following else len(text)
            # A section ends at the next heading of any level.
            body = text[heading.end():end]
            next_heading = re.search(r"^#{1,3} ", body, re.MULTILINE)
            self.sections[heading.group(1)] = body[:next_heading.start()] if next_heading else body

    def proofs(self, item: str) -> list[tuple[str, str]]:
        return PROOF.findall(self.sections[item])


@cache
def doc() -> Doc:
    return Doc(SECURITY_DOC.read_text(encoding="utf-8"))


def citing_files() -> Iterator[Path]:
    """CITING_DIRS, and the documents under docs/ other than docs/security.md itself."""
    for directory in CITING_DIRS:
        for path in sorted((ROOT / directory).rglob("*")):
            if path.is_file() and path.suffix in TEXT_SUFFIXES and "__pycache__" not in path.parts \
                    and path.resolve() != THIS_FILE:
                yield path
    yield from (path for path in sorted((ROOT / "docs").rglob("*.md")) if path.resolve() != SECURITY_DOC)


def repository_text_files() -> Iterator[Path]:
    """Everything a reader may follow a file name from: the citing dirs, docs/, the top-level files."""
    yield from citing_files()
    yield SECURITY_DOC
    yield from (path for path in sorted(ROOT.iterdir()) if path.is_file() and path.suffix in TEXT_SUFFIXES)
    yield from (path for path in sorted((ROOT / ".ci").glob("*")) if path.is_file())


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def undefined_citations(document: Doc) -> list[str]:
    defined = set(document.ids)
    problems = []
    for path in citing_files():
        for line, cited in citations(path.read_text(encoding="utf-8"), document.areas):
            if cited not in defined:
                problems.append(f"{relative(path)}:{line} cites {cited}, which docs/security.md does not define")
    return problems


# The document itself


def test_items_are_defined_once_in_known_areas() -> None:
    ids = doc().ids
    assert len(ids) >= 50, "docs/security.md lost its items (### X1: headings)"
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})
    assert set(AREA_ROW.findall(doc().text)) >= {i[0] for i in ids}, "an item's letter is missing from the area table"


def test_every_item_names_a_test_that_proves_it() -> None:
    assert [item for item in doc().ids if not doc().proofs(item)] == []


def test_every_test_named_as_proof_exists() -> None:
    missing = []
    for item in doc().ids:
        for file, name in doc().proofs(item):
            path = ROOT / file
            if not path.is_file():
                missing.append(f"{item}: {file} does not exist")
            elif name not in defined_tests(path):
                missing.append(f"{item}: {file} defines no {name}")
    assert missing == []


def test_room_for_the_hardening_findings() -> None:
    assert re.search(r"^## Hardening findings$", doc().text, re.MULTILINE)


# Citations


def test_every_cited_id_is_defined() -> None:
    assert undefined_citations(doc()) == []


def test_the_code_and_tests_cite_every_area() -> None:
    # Guards the scanner: a change that made it find nothing would pass the test above.
    cited = {cited for path in citing_files() for _, cited in citations(path.read_text(encoding="utf-8"), doc().areas)}
    assert {i[0] for i in cited} >= set(doc().areas)
    assert len(cited) >= 50


def test_removing_a_cited_item_from_the_doc_is_caught() -> None:
    text = doc().text
    start = text.index("### W6:")
    trimmed = Doc(text[:start] + text[text.index("## R:", start):])

    problems = set(undefined_citations(trimmed)) - set(undefined_citations(doc()))

    assert "W6" not in trimmed.ids and problems
    assert all("cites W6" in problem for problem in problems)
    assert any(problem.startswith("tests/test_enrollment_routes.py:") for problem in problems)  # def test_w6_…
    assert any(problem.startswith("spc_embed/") for problem in problems)  # "(W6)" in the code


@pytest.mark.parametrize("text, expected", [
    ("def test_w6_posts_refused():", ["W6"]),
    ("async def test_r2_p1_spellings():", ["R2", "P1"]),
    ("stable ``code``. docs/security.md R1-R4, A3, A4, P1, P2.", ["A3", "A4", "P1", "P2", "R1", "R2", "R3", "R4"]),
    ("rolls back (docs/security.md A10, S8, T3).", ["A10", "S8", "T3"]),
    ('"""CSRF defence for browser POSTs (SECURITY W6): …"""', ["W6"]),
    ("see `docs/security.md` X1", ["X1"]),
    ("# §7.1: verify alg (and fits the key, P5).", ["P5"]),
    ("# SPC: verify total (S5, see transactions.py).", ["S5"]),
    ("# T3 and S8: states only move forward", ["S8", "T3"]),
    ('"""Authenticator data: R5-R7, R10, A11."""', ["A11", "R10", "R5", "R6", "R7"]),
    ("# Following WebAuthn L3 §6.1 and RFC 8785", []),
    ("an EC P-256 key, ES256, SHA-256, X.509, fido-u2f, A-, S- and P-items", []),
    ("R2's unknown challenges; the W1 headers", []),
    ("def test_a_revoked_credential_rolls_back():", []),
    ('{"A1": 1, "S3": "bucket"}', []),
])
def test_what_counts_as_a_citation(text: str, expected: list[str]) -> None:
    assert sorted(cited for _, cited in citations(text, "ARSPTW")) == sorted(expected)


# File names


def test_nothing_cites_the_old_browser_testing_notes() -> None:
    offenders = [relative(path) for path in repository_text_files()
                 if re.search(r"browser_testing\.md", path.read_text(encoding="utf-8"), re.IGNORECASE)]
    assert offenders == [], "cite docs/browser-testing.md"


def test_security_citations_name_docs_security_md() -> None:
    offenders = []
    for path in repository_text_files():
        if path.resolve() == SECURITY_DOC:
            continue
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"security\.md", text, re.IGNORECASE):
            if text[max(0, match.start() - 5):match.end()] != "docs/security.md":
                offenders.append(f"{relative(path)}:{text.count(chr(10), 0, match.start()) + 1}")
        for match in re.finditer(r"\bSECURITY\s+[A-Z]\d", text):
            offenders.append(f"{relative(path)}:{text.count(chr(10), 0, match.start()) + 1}")
    assert offenders == [], "cite docs/security.md, with its path, and nothing else"


def test_documents_named_under_docs_exist() -> None:
    missing = set()
    for path in repository_text_files():
        for name in re.findall(r"\bdocs/[\w./-]+?\.md\b", path.read_text(encoding="utf-8")):
            if not (ROOT / name).is_file():
                missing.add(f"{relative(path)} names {name}")
    assert sorted(missing) == []

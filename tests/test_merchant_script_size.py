"""What every merchant page downloads from the issuer: the module graph of spc-merchant.js, gzipped.

The merchant kit is paid for on every checkout page, so the page's share of it
has a budget: everything it loads to call SPC and handle the outcomes (the
entry module and whatever it imports, transitively) is at most 4 KiB gzipped.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

WIDGET = Path(__file__).resolve().parent.parent / "widget"
MERCHANT_ENTRY = WIDGET / "spc-merchant.js"
LIMIT = 4096

# Static imports and re-exports are top-level statements; a specifier is a string literal.
_STATIC = re.compile(r"""^(?:import|export)\b[^;'"]*?\bfrom\s*(['"])(?P<from>[^'"]+)\1|^import\s*(['"])(?P<bare>[^'"]+)\3""",
                     re.MULTILINE)
_DYNAMIC = re.compile(r"""\bimport\s*\(\s*(?:(['"])(?P<spec>[^'"]+)\1\s*\))?""")


def imported_specifiers(source: str) -> list[str]:
    """Every module ``source`` imports; raises for an import this cannot follow."""
    statements = list(_STATIC.finditer(source))
    read = sum(1 for m in statements if m[0].startswith("import"))
    if read != len(re.findall(r"^import\b(?!\s*[(.])", source, re.MULTILINE)):
        raise ValueError("an import statement whose specifier cannot be read")
    specifiers = [m["from"] or m["bare"] for m in statements]
    for match in _DYNAMIC.finditer(source):
        if match["spec"] is None:
            raise ValueError(f"a dynamic import of a computed specifier: {match[0]!r}")
        specifiers.append(match["spec"])
    return specifiers


def module_graph(entry: Path) -> list[Path]:
    """The entry module and everything it imports, transitively, each once."""
    seen: dict[Path, None] = {}
    pending = [entry.resolve()]
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen[module] = None
        for specifier in imported_specifiers(module.read_text()):
            # Relative only: a bare name or another origin would be a third-party script.
            if not specifier.startswith(("./", "../")):
                raise ValueError(f"{module.name} imports {specifier!r}: not a module of the widget")
            pending.append((module.parent / specifier).resolve())
    return list(seen)


def gzipped_size(path: Path) -> int:
    return len(gzip.compress(path.read_bytes(), compresslevel=9, mtime=0))


def test_merchant_page_loads_at_most_4_kib_gzipped() -> None:
    sizes = {path.name: gzipped_size(path) for path in module_graph(MERCHANT_ENTRY)}

    assert sum(sizes.values()) <= LIMIT, f"{sum(sizes.values())} bytes gzipped > {LIMIT}: {sizes}"


def test_merchant_page_does_not_load_the_iframe_helpers() -> None:
    names = {path.name for path in module_graph(MERCHANT_ENTRY)}

    assert "webauthn-json.js" not in names
    assert not names & {"enroll.js", "pay.js"}


def test_module_graph_follows_every_kind_of_import(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "entry.js").write_text(
        '// import { nothing } from "./commented-out.js";\n'
        'import { a } from "./a.js";\n'
        "import {\n  b,\n} from './lib/b.js';\n"
        'import "./side-effect.js";\n'
        'export { c } from "./c.js";\n'
        'const later = () => import("./lazy.js");\n'
    )
    (tmp_path / "lib" / "b.js").write_text('import { a } from "../a.js";\n')
    for name in ("a.js", "side-effect.js", "c.js", "lazy.js"):
        (tmp_path / name).write_text("export const x = 1;\n")

    names = sorted(path.relative_to(tmp_path).as_posix() for path in module_graph(tmp_path / "entry.js"))

    assert names == ["a.js", "c.js", "entry.js", "lazy.js", "lib/b.js", "side-effect.js"]


@pytest.mark.parametrize("source", [
    'import { x } from "https://cdn.example/x.js";\n',
    'import { x } from "lodash";\n',
    "const name = './x.js';\nimport(name);\n",
])
def test_module_graph_refuses_what_it_cannot_count(tmp_path: Path, source: str) -> None:
    (tmp_path / "entry.js").write_text(source)

    with pytest.raises(ValueError):
        module_graph(tmp_path / "entry.js")

"""Build hook: the wheel carries the frames' message catalogs compiled (``.mo``) beside their ``.po`` sources.

The ``.po`` files under ``spc_embed/locale/`` are what is edited and committed;
compiling them here means an installed package reads ready catalogs and needs
no build step of its own. Editable installs skip it: spc_embed.i18n compiles
a ``.po`` that has no ``.mo`` in memory when the issuer starts.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class CompileCatalogs(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable":
            return
        from babel.messages.mofile import write_mo
        from babel.messages.pofile import read_po

        self._compiled = Path(tempfile.mkdtemp(prefix="spc-embed-catalogs-"))
        locale_root = Path(self.root) / "spc_embed" / "locale"
        for source in sorted(locale_root.glob("*/LC_MESSAGES/*.po")):
            relative = source.relative_to(locale_root).with_suffix(".mo")
            target = self._compiled / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            with source.open("rb") as fh:
                catalog = read_po(fh, locale=relative.parts[0])
            errors = [(message.id, error) for message, problems in catalog.check() for error in problems]
            if errors:
                raise ValueError(f"{source}: {errors[0][1]} (in {errors[0][0]!r})")
            with target.open("wb") as fh:
                write_mo(fh, catalog)
            build_data["force_include"][str(target)] = f"spc_embed/locale/{relative.as_posix()}"

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        compiled = getattr(self, "_compiled", None)
        if compiled is not None:
            shutil.rmtree(compiled, ignore_errors=True)

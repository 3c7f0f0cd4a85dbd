"""The keys of [tool.forge], [tool.forge.wasm] and [tool.forge.cloudflare], in one place, and the
rules every reader shares: unknown keys (with a "did you mean" suggestion), SOURCE_DATE_EPOCH and
the slug of a name.

Unknown keys in [tool.forge] and [tool.forge.wasm] are a ConfigError (exit 17); those in
[tool.forge.cloudflare] are reported by `forge deploy cloudflare` with the other deployment
problems (DeployConfigError, exit 44), using the same key list and suggestion."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from forge import errors

FORGE_KEYS = ("entry", "name", "include", "python", "source_date_epoch", "format", "compression",
              "target", "tag", "allocator", "builtins", "version", "license", "exclude", "compile",
              "request_timeout", "wasm", "cloudflare")
WASM_KEYS = ("preinit",)
CLOUDFLARE_KEYS = ("name", "instance_type", "max_instances", "sleep_after", "env", "regions",
                   "compatibility_date", "bindings", "enable_internet", "allowed_hosts")


def suggest(word: str, known) -> str:
    """' (did you mean 'x'?)' for the closest known word, or ''."""
    match = difflib.get_close_matches(str(word), list(known), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def check_keys(table: dict, known, section: str, where: Path | str) -> None:
    """ConfigError (exit 17) for the first key of table that forge does not know."""
    for key in table:
        if key not in known:
            raise errors.ConfigError(
                f"unknown setting {key!r} in [{section}] of {where}{suggest(key, known)}. forge reads "
                f"only these keys there: {', '.join(known)}; a misspelt key would otherwise be silently "
                f"ignored. Fix or remove the line and build again.")


def check_forge_table(tool: dict, where: Path | str) -> None:
    """[tool.forge] and its [tool.forge.wasm] subtable: every key known."""
    if not isinstance(tool, dict):
        raise errors.ConfigError(f"[tool.forge] in {where} must be a table.")
    check_keys(tool, FORGE_KEYS, "tool.forge", where)
    wasm = tool.get("wasm", {})
    if isinstance(wasm, dict):
        check_keys(wasm, WASM_KEYS, "tool.forge.wasm", where)


def source_date_epoch(tool: dict) -> int:
    """SOURCE_DATE_EPOCH (https://reproducible-builds.org/specs/source-date-epoch/) from the
    environment (an empty value counts as unset), else [tool.forge] source_date_epoch, else 0: a
    whole number of seconds since 1970."""
    raw = os.environ.get("SOURCE_DATE_EPOCH", "").strip() or tool.get("source_date_epoch", 0)
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        return raw
    if isinstance(raw, str) and raw.isdigit():
        return int(raw)
    raise errors.ConfigError(f"SOURCE_DATE_EPOCH must be a whole number of seconds since 1970, not {raw!r}.")

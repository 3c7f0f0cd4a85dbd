"""Is an ELF file fully static? Read with pyelftools: no PT_INTERP, no DT_NEEDED."""

from __future__ import annotations

from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile


def static_problems(path: Path) -> list[str]:
    """Everything that makes `path` depend on a dynamic loader; empty means fully static."""
    problems: list[str] = []
    try:
        with open(path, "rb") as fh:
            elf = ELFFile(fh)
            if elf.get_machine_arch() != "x64":
                problems.append(f"architecture is {elf.get_machine_arch()}, not x86_64")
            for seg in elf.iter_segments():
                if seg.header.p_type == "PT_INTERP":
                    problems.append(f"PT_INTERP {seg.get_interp_name()}")
            for sec in elf.iter_sections():
                if isinstance(sec, DynamicSection):
                    problems += [f"DT_NEEDED {t.needed}" for t in sec.iter_tags() if t.entry.d_tag == "DT_NEEDED"]
    except (ELFError, OSError) as exc:
        problems.append(f"not a readable ELF file: {exc}")
    return problems

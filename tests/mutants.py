"""What a mutmut mutant changes, as text, and whether it is one the project reviewed as equivalent.

mutmut numbers a function's mutants in the order it makes them, so a number changes whenever the function does;
the change itself (the lines the mutant removes and adds) stays put. A reviewed-equivalent mutant is named by its
function and that change in benchmarks/mutation_equivalents.toml, which benchmarks/mutation.py hands to the mutant
processes as JSON (EQUIVALENTS_ENV): such a mutant's process stops before any test runs, with mutmut's "skipped"
exit code, and the run reports it apart from the killed and the survivors.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path

EQUIVALENTS_ENV = "RETROSEARCH_EQUIVALENT_MUTANTS"
SKIPPED = 34  # mutmut's exit code for a mutant it reports as "skipped"
SUSPICIOUS = 35  # and for one it reports as "suspicious"


def split_name(mutant: str) -> tuple[str, str, str]:
    """'pkg.mod.xǁClassǁname__mutmut_3' -> ('pkg.mod', 'xǁClassǁname', 'xǁClassǁname__mutmut_3')."""
    module, _, local = mutant.rpartition(".")
    return module, local.split("__mutmut_")[0], local


def function_lines(source: str, name: str) -> list[str]:
    """The lines of function `name` in `source`: its def line and every line after it that is blank, indented
    deeper, or closes its signature. A text scan, not a parse: a mutated module holds every mutant of its functions
    (tens of thousands of lines), and a mutant's process has a second or less to spare."""
    lines = source.splitlines()
    start = next(
        (index for index, line in enumerate(lines) if line.lstrip().startswith((f"def {name}(", f"async def {name}("))),
        None,
    )
    if start is None:
        raise LookupError(f"{name}: not in the mutated source")
    indent = len(lines[start]) - len(lines[start].lstrip())
    end = start + 1
    while end < len(lines) and (
        not lines[end].strip()
        or len(lines[end]) - len(lines[end].lstrip()) > indent
        or lines[end].lstrip().startswith(")")
    ):
        end += 1
    return lines[start:end]


def change_of(source: str, local: str) -> tuple[str, str]:
    """The lines mutant `local` removes and adds against its function's original, each stripped, joined by
    newlines, read from the mutated module's source."""
    base = local.split("__mutmut_")[0]
    original = function_lines(source, f"{base}__mutmut_orig")
    mutated = [line.replace(local, f"{base}__mutmut_orig", 1) for line in function_lines(source, local)]
    removed, added = [], []
    for line in difflib.ndiff(original, mutated):
        if line.startswith("- ") and line[2:].strip():
            removed.append(line[2:].strip())
        elif line.startswith("+ ") and line[2:].strip():
            added.append(line[2:].strip())
    return "\n".join(removed), "\n".join(added)


def is_reviewed_equivalent(mutant: str, module_file: Path) -> bool:
    """Whether the reviewed list handed over in EQUIVALENTS_ENV names this mutant's function and change."""
    listing = os.environ.get(EQUIVALENTS_ENV)
    if not listing:
        return False
    _, function, local = split_name(mutant)
    reviewed = json.loads(Path(listing).read_text(encoding="utf-8")).get(mutant.rsplit(".", 1)[0] + "." + function)
    if not reviewed:
        return False
    change = change_of(module_file.read_text(encoding="utf-8"), local)
    return any((entry["before"], entry["after"]) == change for entry in reviewed)

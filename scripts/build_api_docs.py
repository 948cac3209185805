"""Build the API reference of napari-sseg from its numpydoc docstrings, failing on any warning.

Usage: ``python scripts/build_api_docs.py [OUT_DIR]`` (default ``docs/_build/api``). The pages are
rendered by pdoc; before that, every public docstring of the package is parsed by numpydoc, and
a malformed one (an unknown section, a section that does not parse, a documented parameter the
signature lacks) is an error. Exit code 0 when the reference builds cleanly, 1 otherwise. The test
suite runs it, so a broken docstring fails CI.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
import warnings
from pathlib import Path

PACKAGE = "napari_sseg"
#: public subpackages and modules documented (the napari layer is documented in the user guide)
ROOTS = ("core", "io", "backends", "learn", "batch", "tasks", "cli")


def _modules() -> list[str]:
    names = []
    for root in ROOTS:
        full = f"{PACKAGE}.{root}"
        try:
            mod = importlib.import_module(full)
        except ModuleNotFoundError as exc:
            if exc.name == full:  # optional parts that this checkout does not have
                continue
            raise
        names.append(full)
        if hasattr(mod, "__path__"):
            for info in pkgutil.walk_packages(mod.__path__, prefix=f"{full}."):
                if not info.name.rsplit(".", 1)[1].startswith("_"):
                    names.append(info.name)
    return names


def _public_objects(module):
    exported = getattr(module, "__all__", None)
    for name, obj in vars(module).items():
        if name.startswith("_") or (exported is not None and name not in exported):
            continue
        if getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isfunction(obj) or inspect.isclass(obj):
            yield f"{module.__name__}.{name}", obj
            if inspect.isclass(obj):
                for mname, meth in vars(obj).items():
                    if not mname.startswith("_") and inspect.isfunction(meth):
                        yield f"{module.__name__}.{name}.{mname}", meth


def check_docstrings(modules: list[str]) -> list[str]:
    """Problems found by parsing every public docstring with numpydoc."""
    from numpydoc.docscrape import NumpyDocString

    problems = []
    for modname in modules:
        module = importlib.import_module(modname)
        for qual, obj in _public_objects(module):
            doc = inspect.getdoc(obj)
            if not doc:
                problems.append(f"{qual}: no docstring")
                continue
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    parsed = NumpyDocString(doc)
                except Exception as exc:  # numpydoc raises ValueError on broken sections
                    problems.append(f"{qual}: {exc}")
                    continue
            problems += [f"{qual}: {w.message}" for w in caught]
            if inspect.isfunction(obj):
                try:
                    sig = inspect.signature(obj)
                except (TypeError, ValueError):
                    continue
                allowed = set(sig.parameters) | {f"*{p}" for p in sig.parameters} | {
                    f"**{p}" for p in sig.parameters}
                for param in parsed["Parameters"]:
                    for name in (n.strip() for n in param.name.split(",")):
                        if name and name not in allowed:
                            problems.append(f"{qual}: documents parameter {name!r} that the "
                                            f"signature does not have")
    return problems


def build(out_dir: Path) -> list[str]:
    """Render the reference into ``out_dir``; returns the problems (empty when clean)."""
    modules = _modules()
    problems = check_docstrings(modules)
    import pdoc
    import pdoc.render

    pdoc.render.configure(docformat="numpy", search=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # pdoc walks the submodules of each root itself
        pdoc.pdoc(*[m for m in modules if m.count(".") == 1], output_directory=out_dir)
    for w in caught:  # pdoc's own warnings (unresolvable names, bad annotations) are errors
        if "pdoc" in str(getattr(w, "filename", "")) or PACKAGE in str(w.message):
            problems.append(f"pdoc: {w.message}")
    return problems


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0]) if argv else Path("docs/_build/api")
    problems = build(out)
    for p in problems:
        sys.stderr.write(f"api docs: {p}\n")
    if problems:
        sys.stderr.write(f"api docs: {len(problems)} problem(s); the reference is not clean\n")
        return 1
    sys.stdout.write(f"api docs: built {out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Finding the user's own code: ``_target_`` lookups that say which module failed and why, in one line, and the
``plugins=`` option that imports modules (by name or by file path) before a config is checked.

Where a ``_target_``'s module is searched: the installed packages, then the current directory (as ``python -m``
would find it; a console script does not by itself). The current directory, or a ``plugins`` file's folder, is on
``sys.path`` only while that module is imported, so a file there named like a package (``envs.py``) never shadows
the project's own modules, whichever way the project is installed.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any


class LookupFailed(ValueError):
    """A module or a name in it could not be found or imported; the message says which and why, in one line."""


def _where(err: BaseException) -> str:
    """``file.py:line`` of the innermost frame of ``err`` (or the file a SyntaxError names)."""
    if isinstance(err, SyntaxError) and err.filename:
        return f"{Path(err.filename).name}:{err.lineno}"
    frames = traceback.extract_tb(err.__traceback__)
    return f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


def _search_note() -> str:
    return (
        f"in the installed packages or the current directory ({os.getcwd()}); for a file elsewhere pass "
        "plugins=[path/to/file.py] or set PYTHONPATH"
    )


def _import(name: str) -> ModuleType | None:
    """``importlib.import_module(name)``; None when ``name`` itself (or its parent package) does not exist; an error
    raised while importing it (a syntax error, a missing dependency) becomes a :class:`LookupFailed` naming it."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name and (name == err.name or name.startswith(err.name + ".")):
            return None
        raise LookupFailed(f"importing module {name!r} failed at {_where(err)}: {_one_line(err)}") from None
    except Exception as err:  # the user's module raised while importing: say where, not a 40-line traceback
        raise LookupFailed(f"importing module {name!r} failed at {_where(err)}: {_one_line(err)}") from None


def _import_from(folder: str, name: str) -> ModuleType | None:
    """``name`` imported with ``folder`` on ``sys.path`` for the import only (its siblings import too)."""
    top = name.split(".")[0]
    if not (Path(folder, f"{top}.py").is_file() or Path(folder, top, "__init__.py").is_file()):
        return None
    sys.path.append(folder)
    importlib.invalidate_caches()  # the folder's listing may be cached from before the file was written
    try:
        return _import(name)
    finally:
        sys.path.remove(folder)


def import_module(name: str) -> ModuleType | None:
    """The module ``name`` from the installed packages, else from the current directory; None when it is in
    neither; :class:`LookupFailed` naming it when importing it raised."""
    module = _import(name)
    return module if module is not None else _import_from(os.getcwd(), name)


def locate(target: str) -> Any:
    """The object a dotted path ``module.Name`` names: the longest importable module prefix, then attributes.
    Nothing is called. Raises :class:`LookupFailed` with one line saying which module and why."""
    parts = target.split(".")
    if len(parts) < 2 or not all(parts):
        raise LookupFailed(f"{target!r} is not a module.Name path")
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:cut])
        module = import_module(module_name)
        if module is None:
            continue
        obj: Any = module
        for i, attr in enumerate(parts[cut:]):
            if not hasattr(obj, attr):
                owner = ".".join(parts[: cut + i])
                names = sorted(n for n in vars(obj) if not n.startswith("_")) if hasattr(obj, "__dict__") else []
                shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
                where = getattr(obj, "__file__", None)
                raise LookupFailed(
                    f"module {owner!r}{f' ({where})' if where else ''} has no {attr!r}; it defines: {shown or 'nothing'}"
                )
            obj = getattr(obj, attr)
        return obj
    raise LookupFailed(f"no module named {parts[0]!r} {_search_note()}")


def load_plugins(entries: Any) -> list[ModuleType]:
    """Import each ``plugins`` entry before the config is checked: a dotted module name (``my_pkg.guards``) or a
    path to a ``.py`` file (imported under its file name, its folder on ``sys.path`` while it imports), so a
    ``_target_`` can name what it defines (``my_guards.Ceiling``) and its ``@register_guardrail`` decorators run."""
    if entries is None:
        return []
    if isinstance(entries, str):
        entries = [entries]
    if not isinstance(entries, list | tuple):
        raise LookupFailed(f"plugins must be a list of module names or .py paths, got {entries!r}")
    modules = []
    for entry in entries:
        if not isinstance(entry, str) or not entry:
            raise LookupFailed(f"plugins entries must be module names or .py paths, got {entry!r}")
        if entry.endswith(".py") or os.sep in entry or "/" in entry:
            path = Path(entry).expanduser().resolve()
            if not path.is_file():
                raise LookupFailed(f"plugins: no file {entry!r} (resolved to {path})")
            module = sys.modules.get(path.stem) or _import_from(str(path.parent), path.stem)
            loaded = getattr(module, "__file__", None)
            if module is None or loaded is None or Path(loaded).resolve() != path:
                raise LookupFailed(
                    f"plugins: {entry!r} was not imported as module {path.stem!r}"
                    + (f" (that name is already {loaded})" if loaded else "")
                    + "; rename the file"
                )
        else:
            module = import_module(entry)
            if module is None:
                raise LookupFailed(f"plugins: no module named {entry!r} {_search_note()}")
        modules.append(module)
    return modules

"""The files perfci ships and reads at run time: the suites and the dashboard's templates, assets and cost table.

They live at the top of the repository (`suites/`, `dashboards/`); the wheel carries them inside the package
(`perfci/suites`, `perfci/dashboards`, mapped by pyproject.toml's force-include). An editable install imports
perfci from the source tree, where the package has no such folders: there they are read from the checkout.
(hatchling's editable install also copies them into site-packages/perfci/, but the checkout's package hides
that stale copy, and perfci never reads it.)
Everything is handed out as an importlib.resources Traversable, so a caller never assumes a file system path.
"""

from __future__ import annotations

import importlib.resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Literal

import jinja2

Shipped = Literal["suites", "dashboards"]


def shipped(name: Shipped) -> Traversable:
    """The folder `name` of the installed package, else (an editable checkout) the repository's own."""
    inside = importlib.resources.files("perfci") / name
    if inside.is_dir():
        return inside
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / name).is_dir():
        return checkout / name
    # Not a user's mistake: the install itself lacks the folder.
    raise RuntimeError(f"perfci is installed without its {name}/ folder (looked in {inside} and {checkout / name})")


def copy_tree(source: Traversable, dest: Path) -> None:
    """`source` copied to the new folder `dest` (Python 3.11's as_file cannot hand out a folder)."""
    dest.mkdir(parents=True)
    for item in source.iterdir():
        if item.is_dir():
            copy_tree(item, dest / item.name)
        else:
            (dest / item.name).write_bytes(item.read_bytes())


def template_loader(folder: Traversable) -> jinja2.BaseLoader:
    """A jinja2 loader reading templates (names may hold '/') from `folder`."""

    def load(name: str) -> str | None:
        item = folder.joinpath(*name.split("/"))
        return item.read_text(encoding="utf-8") if item.is_file() else None

    return jinja2.FunctionLoader(load)

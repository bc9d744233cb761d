"""``saga init NAME``: a first saga of one's own, in a new folder, that runs as written.

The files are the package ``coordinator.examples.starter`` (checked by the
repo's lint, types and tests like any other code) with its name, ``starter``,
replaced by NAME: the folder is a package named NAME, so its modules import
each other relatively and ``saga run --saga NAME.saga:saga`` finds it from the
folder's parent.
"""

from __future__ import annotations

import keyword
import sys
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["commands"]

commands = typer.Typer()

_TEMPLATE = "coordinator.examples.starter"
_FILES = ("__init__.py", "messages.py", "saga.py", "services.py", "test_saga.py", "README.md")


def _check_name(name: str) -> str:
    if not name.isidentifier() or keyword.iskeyword(name) or not name.isascii():
        raise typer.BadParameter(
            f"{name!r} is not a Python package name; use letters, digits and '_', "
            "starting with a letter",
            param_hint="'NAME'",
        )
    if name in sys.stdlib_module_names or name in {"coordinator", "participants", "contracts"}:
        raise typer.BadParameter(
            f"{name!r} would hide the module of that name; choose another", param_hint="'NAME'"
        )
    return name


@commands.command()
def init(
    name: Annotated[
        str,
        typer.Argument(help="The new saga's name: a folder and Python package of that name."),
    ],
    into: Annotated[
        Path, typer.Option("--into", help="Where to create the folder.", file_okay=False)
    ] = Path(),
) -> None:
    """Write a small saga, its participant services, a test and a README into a new folder."""
    folder = into / _check_name(name)
    if folder.exists():
        raise typer.BadParameter(
            f"{folder} exists; choose another name or remove it", param_hint="'NAME'"
        )
    template = resources.files(_TEMPLATE)
    texts = {file: template.joinpath(file).read_text().replace("starter", name) for file in _FILES}
    folder.mkdir(parents=True)
    for file, text in texts.items():
        (folder / file).write_text(text)
    typer.echo(f"wrote {folder}/: {', '.join(_FILES)}")
    typer.echo(f"next: pytest {folder}   (then see {folder}/README.md)")

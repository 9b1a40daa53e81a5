"""Command-line options generated from a dataclass, ``--config`` files, and the flag vocabulary of every command.

One vocabulary across commands: ``--batch`` is images per batch (train, eval, segment; export's
``--batch`` is the engine's batch profile, benchmark's ``--batches`` a list), ``--device`` is
``auto``, ``cpu``, ``cuda`` or ``cuda:N``, ``--classes`` takes class names or ids, ``--out``
is where results go (for train: the parent of the run folders). Older spellings stay
accepted as hidden, deprecated aliases that print a one-line notice.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from twdeploy.errors import TwdeployError

RENAMED = {"batch_size": "--batch"}
"""Dataclass fields whose flag is not ``--field-name``; ``--field-name`` stays a deprecated alias."""
ALIAS_PREFIX = "deprecated_"
CONFIG_SUFFIXES = (".json", ".yaml", ".yml")
_err = Console(stderr=True, soft_wrap=True)


def flag(name: str) -> str:
    """The command-line spelling of a field: ``batch_size`` -> ``--batch``, ``w_cls`` -> ``--w-cls``."""
    return RENAMED.get(name, "--" + name.replace("_", "-"))


def deprecated_option(old: str, new: str, kind: type) -> Any:
    """A hidden option spelled ``old`` that stands for ``new``; :func:`take_deprecated` reads it."""
    return Annotated[kind | None, typer.Option(old, hidden=True, help=f"Deprecated spelling of {new}.")]


def take_deprecated(value: Any, current: Any, old: str, new: str) -> Any:
    """``value`` (given through the deprecated ``old``) with a notice, else ``current``."""
    if value is None:
        return current
    _err.print(f"[yellow]deprecated:[/yellow] {old} is now {new}", highlight=False)
    return value


def dataclass_parameters(
    cls: type,
    helps: Mapping[str, str],
    skip: frozenset[str] = frozenset(),
    none_flags: Mapping[str, Any] | None = None,
    panel: str | None = None,
) -> list[inspect.Parameter]:
    """One keyword parameter per field of ``cls`` (minus ``skip``), annotated as a Typer option.

    Name, type and default come from the field, the help text from ``helps`` (listed under the
    help ``panel``); a field in
    ``none_flags`` takes that value on the command line to mean None. A renamed field also
    gets a hidden ``deprecated_<field>`` parameter for its old spelling.
    """
    hints = typing.get_type_hints(cls)
    none_flags = none_flags or {}
    params = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        kind = hints[f.name]
        if f.name in none_flags:
            kind, default = _not_none(kind), none_flags[f.name] if default is None else default
        decls = [] if kind is bool else [flag(f.name)]
        option = typer.Option(*decls, help=helps.get(f.name, ""), rich_help_panel=panel)
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                        annotation=Annotated[kind, option]))  # fmt: skip
        if f.name in RENAMED:
            old = "--" + f.name.replace("_", "-")
            annotation = deprecated_option(old, RENAMED[f.name], _not_none(kind))
            params.append(inspect.Parameter(ALIAS_PREFIX + f.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                            annotation=annotation))  # fmt: skip
    return params


def _not_none(kind: Any) -> Any:
    """``int | None`` -> ``int``."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    return args[0] if len(args) == 1 else kind


def given_on_command_line(ctx: typer.Context, values: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``values`` the user typed (or set through the environment), not the defaults.

    A deprecated alias (``deprecated_<field>``) is taken out of ``values``; when given, it
    prints a notice and stands for its field unless the new spelling was given too.
    """
    given = {name: value for name, value in values.items() if _typed(ctx, name)}
    for name, new in RENAMED.items():
        alias = values.pop(ALIAS_PREFIX + name, None)
        given.pop(ALIAS_PREFIX + name, None)
        if alias is not None:
            given.setdefault(name, take_deprecated(alias, None, "--" + name.replace("_", "-"), new))
    return given


def _typed(ctx: typer.Context, name: str) -> bool:
    """Whether parameter ``name`` came from the command line or the environment (Click's ParameterSource)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


def typed_fields(cls: type, data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``data`` (from a file) with each known field's value converted to the field's type.

    YAML reads ``1e-4`` as a string and JSON ``5`` as an int where a float is wanted;
    unknown keys are left for the dataclass's own check. Bad values are one-line errors.
    """
    hints = typing.get_type_hints(cls)
    out = dict(data)
    for name, value in data.items():
        if name not in hints or value is None:
            continue
        kind = _not_none(hints[name])
        try:
            if kind is bool:
                if not isinstance(value, bool):
                    raise ValueError
            elif kind in (int, float):
                if isinstance(value, bool) or (kind is int and isinstance(value, float) and not value.is_integer()):
                    raise ValueError
                out[name] = kind(float(value)) if kind is int else kind(value)
            elif kind is str and not isinstance(value, str):
                raise ValueError
        except (TypeError, ValueError):
            raise TwdeployError(f"{where}: {name} must be {kind.__name__}, got {value!r}") from None
    return out


def read_config_file(path: Path) -> dict[str, Any]:
    """A JSON or YAML mapping of field names to values; a one-line error for anything else."""
    suffix = path.suffix.lower()
    if suffix not in CONFIG_SUFFIXES:
        raise TwdeployError(f"--config {path}: give a .json, .yaml or .yml file")
    try:
        text = path.read_text()
    except OSError as exc:
        raise TwdeployError(f"--config {path}: cannot read it ({exc.strerror or exc})") from None
    try:
        data = json.loads(text) if suffix == ".json" else _yaml(text)
    except ValueError as exc:
        raise TwdeployError(f"--config {path}: not valid {suffix[1:].upper()} ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict):
        raise TwdeployError(f"--config {path}: expected a mapping of option names to values, got {type(data).__name__}")
    return {str(key).replace("-", "_"): value for key, value in data.items()}


def _yaml(text: str) -> Any:
    """``yaml.safe_load``; its parse errors as ``ValueError``."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(str(exc)) from None

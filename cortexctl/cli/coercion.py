"""Parameter values without pydantic: the cheap path for the types the CLI declares.

typer (0.2x, on its own copy of click) converts every parameter value through a pydantic
TypeAdapter that it builds the first time the parameter is processed: importing pydantic
and building one adapter per parameter costs a store command more than its own work.
Every parameter here is a str, an int or float (maybe with a minimum), a Path, an enum
choice or a list of str, so :func:`install` gives each such parameter a converter that
handles the plain case directly and hands anything else (a bad value, an out-of-range
number, a value from an unusual source) to typer's own converter, which then gives its
usual result and its usual error message. With a typer that has no such hook (an older
one converts through click types, without pydantic) it does nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, get_args, get_origin

try:  # typer's runtime coercion contract (typer >= 0.2x)
    from typer._coercion import RuntimeParam, build_runtime_param
except ImportError:  # pragma: no cover - an older typer: nothing to do
    RuntimeParam = None  # type: ignore[assignment,misc]

_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)")
_MISS = object()


def _fast_value(descriptor: Any, value: Any, param: Any, ctx: Any) -> Any:
    """``value`` converted as typer would, or _MISS when typer must decide."""
    annotation = descriptor.annotation
    info = descriptor.parameter_info
    if info.parser is not None or descriptor.file_annotation is not None:
        return _MISS
    if annotation is str:
        return value if isinstance(value, str) else _MISS
    if annotation is int or annotation is float:
        plain = type(value) is annotation or (annotation is float and type(value) is int)
        pattern = _INT if annotation is int else _FLOAT
        if not (plain or (isinstance(value, str) and pattern.fullmatch(value))):
            return _MISS
        number = annotation(value)
        if (info.min is not None and number < info.min) or (
            info.max is not None and number > info.max
        ):
            return _MISS  # typer clamps or says what the range is
        return number
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        from typer._param_types import coerce_cli_choice

        try:
            return coerce_cli_choice(
                value, choices=list(annotation), case_sensitive=info.case_sensitive, ctx=ctx
            )
        except ValueError:
            return _MISS
    if annotation is Path and info.path_type is None:
        if not (isinstance(value, str) and value) and not isinstance(value, Path):
            return _MISS
        from typer._param_types import coerce_cli_path

        return coerce_cli_path(Path(value), info, path_type=Path, param=param, ctx=ctx)
    if get_origin(annotation) is list and get_args(annotation) == (str,):
        if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
            return list(value)
        return _MISS
    return _MISS


if RuntimeParam is not None:

    @dataclass(frozen=True)
    class FastRuntimeParam(RuntimeParam):
        """The plain case here; everything else through typer's pydantic converter."""

        descriptor: Any = None

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            result = _fast_value(self.descriptor, value, param, ctx)
            if result is _MISS:
                typer_param = build_runtime_param(self.descriptor)
                return typer_param._coerce_value(value, param=param, ctx=ctx)
            return result


def install(command: Any, *, below: bool = True) -> None:
    """Give every parameter of ``command`` (and with ``below`` of the commands below it),
    its help option included, the cheap converter; a parameter typer has already built
    its converter for keeps it."""
    if RuntimeParam is None:  # pragma: no cover
        return
    stack = [command]
    while stack:
        current = stack.pop()
        for param in current.params:
            _install_param(param)
        _wrap_help_option(current)
        if below:
            stack.extend(getattr(current, "commands", {}).values())


def _install_param(param: Any) -> None:
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is None or getattr(param, "_runtime_param", _MISS) is not None:
        return
    param._runtime_param = FastRuntimeParam(
        parameter_info=descriptor.parameter_info,
        annotation=descriptor.annotation,
        descriptor=descriptor,
    )


def _wrap_help_option(command: Any) -> None:
    """click makes a command's -h/--help option on first use: convert it cheaply too."""
    original = command.get_help_option
    if getattr(original, "cortex_fast", False):
        return

    def get_help_option(ctx: Any) -> Any:
        option = original(ctx)
        if option is not None:
            _install_param(option)
        return option

    get_help_option.cortex_fast = True  # type: ignore[attr-defined]
    command.get_help_option = get_help_option

"""Check keyword options against the function or class that will consume them, before any work.

``check_options(fn, options, skip=...)`` refuses an unknown name (listing the accepted ones) and a
value of the wrong type (by the parameter's annotation, through pydantic), in one line that names
the option — the same check for a term's options, an explainer's and a part reducer's.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable
from typing import Any


def _target(fn: Callable[..., Any]) -> Callable[..., Any]:
    return fn.__init__ if inspect.isclass(fn) else fn  # type: ignore[misc]


def _type_name(hint: Any) -> str:
    """``int``, ``int | tuple[int, int]``, ``float | None``: how the annotation reads in the source."""
    if isinstance(hint, type) and not typing.get_args(hint):
        return hint.__name__
    if typing.get_origin(hint) is typing.Union:
        return " | ".join(_type_name(arg) for arg in typing.get_args(hint))
    return str(hint).replace("typing.", "").replace("NoneType", "None")


def accepted(fn: Callable[..., Any], skip: Iterable[str] = ()) -> tuple[list[str], bool]:
    """(keyword parameter names of ``fn`` minus ``skip``, whether it takes ``**kwargs``)."""
    parameters = inspect.signature(_target(fn)).parameters.values()
    names = [
        p.name
        for p in parameters
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in ("self", *skip)
    ]
    return names, any(p.kind is p.VAR_KEYWORD for p in parameters)


def check_options(
    fn: Callable[..., Any], options: dict[str, Any], skip: Iterable[str] = (), what: str = "option"
) -> None:
    """Raise ``ValueError`` naming the first unknown option or the first value its annotation refuses."""
    from pydantic import TypeAdapter, ValidationError

    names, open_ended = accepted(fn, skip)
    unknown = [k for k in options if k not in names]
    if unknown and not open_ended:
        raise ValueError(f"unknown {what} {unknown[0]!r}; accepted: {', '.join(names) or 'none'}")
    try:
        hints = typing.get_type_hints(_target(fn))
    except Exception:  # an annotation that cannot be resolved here: leave the type to the function
        hints = {}
    for name, value in options.items():
        hint = hints.get(name)
        if hint is None or hint is Any:
            continue
        try:
            TypeAdapter(hint).validate_python(value, strict=False)
        except ValidationError as error:
            expected = _type_name(hint)
            detail = error.errors()[0]["msg"]
            raise ValueError(f"{what} {name!r}: {value!r} is not a valid {expected} ({detail})") from None
        except Exception:  # a type pydantic cannot build a validator for (e.g. nn.Module): not checked here
            continue

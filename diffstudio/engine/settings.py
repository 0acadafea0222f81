"""Every setting described once; validation, ``--set``, ``diffstudio settings`` and the GUI's
editors are derived from the description.

A config field is declared with :func:`setting`, which stores a :class:`Setting` (label, help,
group, unit, range, choices, live or next run, advanced) in the dataclass field's metadata.
:func:`describe` walks :class:`~diffstudio.engine.config.Config` and returns one
:class:`SettingInfo` per dotted name (``optim.lr``) with its type and default.

Type, range and finiteness checks are not our subject, so they are done by pydantic (v2, strict
mode): :func:`field_errors` builds one pydantic model per config section from the description
(lazily, on first use, to keep pydantic off the app's start-up path) and turns its errors into
``(dotted.name, message)`` pairs. Rules between fields live in :mod:`diffstudio.engine.validation`.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import tomllib
import typing
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

from diffstudio.core.choices import Choice

SEED_MAX = 2**63 - 1  # seeds are int64 (torch.Generator.manual_seed's positive range)
_MISSING = object()


@dataclass(frozen=True)
class Setting:
    """What a person needs to know about one setting (stored in a dataclass field's metadata).

    ``ge``/``gt``/``le``/``lt`` bound numbers (floats must also be finite); ``choices`` is a
    registry of :class:`~diffstudio.core.choices.Choice` (or a callable returning one);
    ``none_label`` says what ``None`` means for an optional field; ``live`` settings redraw the
    plots and the oracle at once, the others apply to the next run; ``advanced`` ones sit under
    "Advanced" in the window; ``pattern`` is a regular expression a text must match."""

    label: str
    help: str
    group: str
    unit: str = ""
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[Choice, ...] | Callable[[], tuple[Choice, ...]] | None = None
    none_label: str = ""
    live: bool = False
    advanced: bool = False
    pattern: str | None = None
    suggestions: Callable[[], list[str]] | None = None

    def choice_list(self) -> tuple[Choice, ...]:
        """The choices (calling a registry function when they are computed), or () for a free value."""
        c = self.choices
        return tuple(c() if callable(c) else c) if c is not None else ()


def setting(default: Any = _MISSING, label: str = "", help: str = "", group: str = "", *,
            default_factory: Callable[[], Any] | None = None, **spec: Any) -> Any:
    """A dataclass field carrying its :class:`Setting`; use as ``lr: float = setting(2e-3, ...)``."""
    meta = {"setting": Setting(label=label, help=help, group=group, **spec)}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class SettingInfo:
    """One setting, resolved: dotted ``name``, base ``type`` ("bool", "int", "float", "str",
    "points"), whether ``None`` is allowed, the ``default`` and the :class:`Setting`."""

    name: str
    type: str
    optional: bool
    default: Any
    spec: Setting

    @property
    def section(self) -> str:
        """The config section: 'schedule' of 'schedule.family'."""
        return self.name.split(".", 1)[0]

    @property
    def key(self) -> str:
        """The field within its section: 'family' of 'schedule.family'."""
        return self.name.split(".", 1)[1]

    @property
    def choices(self) -> tuple[Choice, ...]:
        """The allowed values with labels and help (:meth:`Setting.choice_list`)."""
        return self.spec.choice_list()

    def range_text(self) -> str:
        """'> 0', '0 ≤ x < 1', ... or '' when unbounded."""
        s = self.spec
        lo = f"{_num(s.ge)} ≤ " if s.ge is not None else (f"{_num(s.gt)} < " if s.gt is not None else "")
        hi = f" ≤ {_num(s.le)}" if s.le is not None else (f" < {_num(s.lt)}" if s.lt is not None else "")
        if not lo and not hi:
            return ""
        if lo and hi:
            return f"{lo}x{hi}"
        return f"≥ {_num(s.ge)}" if s.ge is not None else (f"> {_num(s.gt)}" if s.gt is not None else f"x{hi}")

    def to_json(self) -> dict[str, Any]:
        """The description as a JSON-ready dict (``diffstudio settings --json`` and the docs)."""
        s = self.spec
        out: dict[str, Any] = {"name": self.name, "type": self.type, "optional": self.optional,
                               "default": self.default, "label": s.label, "help": s.help, "group": s.group,
                               "unit": s.unit, "applies": "live" if s.live else "next run",
                               "advanced": s.advanced}
        bounds = {k: getattr(s, k) for k in ("ge", "gt", "le", "lt") if getattr(s, k) is not None}
        if bounds:
            out["range"] = bounds
        if self.choices:
            out["choices"] = [dataclasses.asdict(c) for c in self.choices]
        if self.optional:
            out["none_means"] = s.none_label
        if s.pattern:
            out["pattern"] = s.pattern
        if s.suggestions:
            out["suggestions"] = list(s.suggestions())
        return out


def _num(v: float) -> str:
    return f"{v:g}" if not (isinstance(v, int) and abs(v) > 1e6) else ("2⁶³ − 1" if v == SEED_MAX else str(v))


def _base_type(hint: Any) -> tuple[str, bool]:
    args = typing.get_args(hint)
    optional = type(None) in args
    core = [a for a in args if a is not type(None)] if args and typing.get_origin(hint) is not list else [hint]
    t = core[0] if len(core) == 1 else hint
    if typing.get_origin(t) is list:
        return "points", optional
    return {bool: "bool", int: "int", float: "float", str: "str"}[t], optional


def describe(config_cls: type | None = None) -> tuple[SettingInfo, ...]:
    """Every setting of the config tree, in declaration order."""
    return _describe(config_cls or _config_cls())


@lru_cache(maxsize=4)
def _describe(config_cls: type) -> tuple[SettingInfo, ...]:
    out: list[SettingInfo] = []
    for section in dataclasses.fields(config_cls):
        cls = section.default_factory  # type: ignore[misc]
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            spec = f.metadata.get("setting")
            if spec is None:
                raise TypeError(f"{cls.__name__}.{f.name} has no setting() description")
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            kind, optional = _base_type(hints[f.name])
            out.append(SettingInfo(f"{section.name}.{f.name}", kind, optional, default, spec))
    return tuple(out)


def by_name(config_cls: type | None = None) -> dict[str, SettingInfo]:
    """``{dotted name: SettingInfo}``."""
    return {s.name: s for s in describe(config_cls)}


_ROOT: list[type] = []


def register_root(config_cls: type) -> type:
    """Make ``config_cls`` (the app's ``Config``) the tree that :func:`describe` and the other
    functions here describe when no class is given. ``engine.config`` registers its ``Config``
    when it is imported, so this module never imports it (no import cycle)."""
    _ROOT[:] = [config_cls]
    return config_cls


def _config_cls() -> type:
    """The registered config class; LookupError when ``diffstudio.engine.config`` was never imported."""
    if not _ROOT:
        raise LookupError("no config class is registered: import diffstudio.engine.config first")
    return _ROOT[0]


# ----------------------------------------------------------------------------- validation (pydantic)
def _annotation(info: SettingInfo) -> Any:
    from typing import Annotated, Literal

    from pydantic import AfterValidator, Field

    s = info.spec
    bounds = {k: getattr(s, k) for k in ("ge", "gt", "le", "lt") if getattr(s, k) is not None}
    if info.choices and info.type == "int":  # Literal[1, 3] would take True for 1
        ann: Any = Annotated[int, AfterValidator(_one_of(tuple(c.value for c in info.choices)))]
    elif info.choices:
        ann = Literal[tuple(c.value for c in info.choices)]  # type: ignore[valid-type]
    elif info.type == "float":
        ann = Annotated[float, Field(allow_inf_nan=False, **bounds)]
    elif info.type == "int":
        ann = Annotated[int, Field(**bounds)]
    elif info.type == "str":
        ann = Annotated[str, Field(pattern=s.pattern)] if s.pattern else str
    elif info.type == "points":
        ann = list[list[Annotated[float, Field(allow_inf_nan=False)]]]
    else:
        ann = bool
    return typing.Optional[ann] if info.optional else ann


def _one_of(allowed: tuple) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        from pydantic_core import PydanticCustomError

        if value not in allowed:
            raise PydanticCustomError("literal_error", "not one of the choices")
        return value

    return check


@lru_cache(maxsize=4)
def _section_models(config_cls: type) -> dict[str, Any]:
    from pydantic import ConfigDict, create_model

    models: dict[str, Any] = {}
    for info in describe(config_cls):
        models.setdefault(info.section, {})[info.key] = (_annotation(info), info.default)
    conf = ConfigDict(strict=True, extra="forbid")
    return {sec: create_model(f"{sec}_settings", __config__=conf, **flds) for sec, flds in models.items()}


def field_errors(config: Any) -> list[tuple[str, str]]:
    """Type, range, finiteness and choice errors of every field of ``config`` (a Config), as
    ``[(dotted.name, message)]``. Never raises on bad values."""
    from pydantic import ValidationError

    errors: list[tuple[str, str]] = []
    for section, model in _section_models(type(config)).items():
        values = dataclasses.asdict(getattr(config, section)) if dataclasses.is_dataclass(
            getattr(config, section)) else getattr(config, section)
        try:
            model.model_validate(values)
        except ValidationError as e:
            seen = set()
            for err in e.errors():
                name = f"{section}.{err['loc'][0]}" if err["loc"] else section
                if name not in seen:  # one message per field (Optional[...] reports each branch)
                    seen.add(name)
                    errors.append((name, _message(err, by_name(type(config)).get(name))))
    return errors


def _describe_value(v: Any) -> str:
    if isinstance(v, str):
        return f"{v!r} (text)"
    if isinstance(v, bool):
        return f"{str(v).lower()} (a boolean)"
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, (list, dict)):
        return f"{json.dumps(v, default=str)[:60]}"
    return repr(v)


def whole_number_hint(value: Any) -> str:
    """What to write instead of a number that is not a whole one: ``": write 1000"`` for 1000.0
    (``1e3`` in TOML is a float), ``": write 2 or 3"`` for 2.5; ``""`` for anything else (text,
    infinities, booleans). Strict types stay strict: the value is never converted silently."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return ""
    if isinstance(value, bool) or not isinstance(value, float) or not math.isfinite(value):
        return ""
    if value == int(value):
        return f": write {int(value)}"
    return f": write {math.floor(value)} or {math.ceil(value)}"


def _message(err: dict, info: SettingInfo | None) -> str:
    """A pydantic error in the words of the setting."""
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    got = _describe_value(value)
    if info is not None and kind in ("literal_error", "enum") and info.choices:
        return f"{got} is not one of {', '.join(str(c.value) for c in info.choices)}"
    if kind == "finite_number":
        return f"must be a finite number, got {got}"
    if kind in ("int_type", "int_from_float"):
        return f"expected a whole number, got {got}{whole_number_hint(value)}"
    if kind == "float_type":
        return f"expected a number, got {got}"
    if kind == "bool_type":
        return f"expected true or false, got {got}"
    if kind == "string_type":
        return f"expected text, got {got}"
    if kind == "list_type":
        return f"expected a list, got {got}"
    if kind == "string_pattern_mismatch":
        return f"{got} is not valid" + (f": {info.spec.help}" if info else "")
    if kind == "extra_forbidden":
        return "unknown setting"
    op = {"greater_than_equal": ("≥", "ge"), "greater_than": (">", "gt"), "less_than_equal": ("≤", "le"),
          "less_than": ("<", "lt")}.get(kind)
    if op is not None:
        bound = ctx.get(op[1])
        text = info.range_text() if info is not None and info.range_text() else f"{op[0]} {bound}"
        return f"must be {text}, got {got}"
    return f"{err['msg']}, got {got}"


# ----------------------------------------------------------------------------- --set name=value
class SettingAssignmentError(ValueError):
    """A ``--set`` that names no setting or has no ``=``; the message is one line."""


def parse_assignment(text: str, config_cls: type | None = None) -> tuple[str, Any]:
    """``"optim.lr=3e-4"`` -> ``("optim.lr", 0.0003)``. The value is read as a TOML value
    (numbers, true/false, "quoted text", [arrays]); text settings take the raw text; ``none``
    or ``null`` clears an optional setting. Raises :class:`SettingAssignmentError`."""
    name, sep, raw = text.partition("=")
    name, raw = name.strip(), raw.strip()
    table = by_name(config_cls)
    if not sep:
        raise SettingAssignmentError(f"--set {text!r}: write NAME=VALUE, e.g. --set optim.lr=3e-4")
    if name not in table:
        close = difflib.get_close_matches(name, list(table), n=1)
        hint = f" (did you mean {close[0]}?)" if close else " (diffstudio settings lists them)"
        raise SettingAssignmentError(f"--set {name}: unknown setting{hint}")
    info = table[name]
    if info.optional and raw.lower() in ("none", "null", ""):
        return name, None
    if info.type == "str":
        return name, raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'" else raw
    try:
        return name, tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return name, raw  # the check then says "expected a number, got 'abc' (text)"


def apply_assignments(config: Any, assignments: list[str]) -> Any:
    """A copy of ``config`` with each ``name=value`` applied (unchecked; validate afterwards)."""
    for text in assignments:
        name, value = parse_assignment(text, type(config))
        section, key = name.split(".", 1)
        config = config.updated(**{section: {key: value}})
    return config


# ----------------------------------------------------------------------------- docs
def settings_json(config_cls: type | None = None) -> dict[str, Any]:
    """The description as JSON: ``{"settings": [...], "schema": <JSON Schema per section>}``."""
    cls = config_cls or _config_cls()
    schema = {sec: m.model_json_schema() for sec, m in _section_models(cls).items()}
    return {"settings": [s.to_json() for s in describe(cls)], "schema": schema}


SECTION_TITLES = {"data": "Data", "model": "Model", "schedule": "Noise schedule", "objective": "Objective",
                  "optim": "Optimizer", "sampling": "Sampling", "run": "Run"}


def settings_markdown(config_cls: type | None = None) -> str:
    """``docs/settings.md``: one table per section, generated from the description."""
    lines = ["# Settings", "",
             "Generated by `diffstudio settings --markdown` from the one description of every setting "
             "(`diffstudio/engine/config.py`); a test fails when this file and the description drift apart.",
             "", "Set any of them in a config file (`[optim]` / `lr = 3e-4`), on the command line "
             "(`diffstudio train --set optim.lr=3e-4`) or in the app (each editor's name is the dotted name). "
             "*live*: the plots and the oracle follow at once; *next run*: applies when a run starts.", ""]
    current = None
    for s in describe(config_cls):
        if s.section != current:
            if current is not None:
                lines.append("")
            current = s.section
            lines += [f"## {SECTION_TITLES.get(current, current)} (`{current}`)", "",
                      "| setting | type | default | range / choices | applies | help |", "|---|---|---|---|---|---|"]
        lines.append(f"| `{s.name}` | {_type_text(s)} | {_default_text(s)} | {_range_cell(s)} | "
                     f"{'live' if s.spec.live else 'next run'}{', advanced' if s.spec.advanced else ''} | "
                     f"{_cell(s.spec.help)} |")
    lines.append("")
    return "\n".join(lines)


def _type_text(s: SettingInfo) -> str:
    t = "choice" if s.choices else s.type
    return f"{t} or none" if s.optional else t


def _default_text(s: SettingInfo) -> str:
    if s.default is None:
        return f"none ({_cell(s.spec.none_label)})" if s.spec.none_label else "none"
    return f"`{json.dumps(s.default)}`" + (f" {s.spec.unit}" if s.spec.unit else "")


def _range_cell(s: SettingInfo) -> str:
    if s.choices:
        return "<br>".join(f"`{c.value}`: {_cell(c.label if c.label != str(c.value) else c.help)}"
                           for c in s.choices)
    text = s.range_text()
    if s.spec.pattern:
        text = (text + " " if text else "") + "see help"
    return (text.replace("x", "value") if text else "") + (" (finite)" if s.type == "float" else "")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")

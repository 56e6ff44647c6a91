"""Build a `RunConfig` from YAML and dotted overrides, reporting every problem at once."""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from tunesmith.config.schema import RunConfig
from tunesmith.errors import ConfigError


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config (or start from defaults), apply `key.sub=value` overrides, validate.

    `${VAR}` and `${VAR:-default}` in data paths are expanded; relative paths are taken from
    the current directory.
    """
    raw: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError([f"no such config file: {path}"], source)
        try:
            with path.open(encoding="utf-8") as handle:
                raw = yaml.safe_load(handle) or {}
        except UnicodeDecodeError:
            raise ConfigError(["not a UTF-8 text file; a config is a YAML file"],
                              source) from None
        except yaml.YAMLError as err:
            where = getattr(err, "problem_mark", None)
            line = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ConfigError([f"not valid YAML{line}: {problem}"], source) from None
        if not isinstance(raw, dict):
            raise ConfigError(["the top level must be a mapping of sections"], source)
    problems: list[str] = []
    raw = apply_overrides(raw, overrides or [], problems)
    config = _build(RunConfig, raw, "", problems)
    if isinstance(config.model.add_tokens, list):
        problems.extend(check_new_tokens(config.model.add_tokens))
    if problems:
        problems, from_overrides = _blame_overrides(problems, overrides or [])
        if path is not None and not from_overrides:
            problems = _with_lines(problems, _key_lines(path))
        raise ConfigError(problems, "the command line" if from_overrides else source)
    _resolve_paths(config)
    return config


def check_new_tokens(tokens: list[str]) -> list[str]:
    """Return the problems of a `model.add_tokens` list: blank or repeated tokens."""
    problems = []
    blank = [t for t in tokens if isinstance(t, str) and not t.strip()]
    if blank:
        problems.append(f"model.add_tokens: {blank[0]!r} is empty or only whitespace; "
                        "remove it or write the token's text, e.g. '<tool_call>'")
    repeated = sorted({t for t in tokens if tokens.count(t) > 1 and t.strip()})
    if repeated:
        problems.append(f"model.add_tokens: {', '.join(map(repr, repeated))} listed more "
                        "than once; list each new token once")
    return problems


def apply_overrides(raw: dict[str, Any], overrides: list[str], problems: list[str]) -> dict:
    """Set `a.b.c=value` items (values parsed as YAML) into a nested dict copy."""
    result = _deep_copy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            problems.append(f"override {item!r}: expected key.sub=value")
            continue
        value, problem = _override_value(key, text)
        if problem:
            problems.append(f"override {item!r}: {problem}")
            continue
        node = result
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                problems.append(f"override {item!r}: {part} is not a section")
                break
        else:
            node[parts[-1]] = value
    return result


# text templates whose `{field}` slots YAML would read as flow mappings
TEMPLATE_KEYS = ("data.mapping.user", "data.mapping.assistant", "data.mapping.system")
# what a value opening with each of these was meant to be, and how to fix it
_FLOW_VALUES = {
    "[": ("a list such as [a.jsonl, b.jsonl]", "balance the brackets"),
    "{": ("a mapping such as {a: 1, b: 2}", "balance the braces"),
    '"': ('a quoted text such as "a b"', "close the quote"),
    "'": ("a quoted text such as 'a b'", "close the quote"),
}


def _override_value(key: str, text: str) -> tuple[Any, str | None]:
    """Parse an override's value as YAML; return (value, problem).

    Text YAML cannot read stays text (`a: b: c`), except a value opening a list, mapping or
    quote: `data.train=[a.jsonl` is a list missing its `]`, not a file name.
    """
    if key in TEMPLATE_KEYS and not (len(text) > 1 and text[0] == text[-1] and text[0] in "'\""):
        return text, None  # a template is text: {context} is a field, not a YAML mapping
    try:
        return (yaml.safe_load(text) if text else ""), None
    except yaml.YAMLError:
        opener = text.lstrip()[:1]
        if opener not in _FLOW_VALUES:
            return text, None
    expected, fix = _FLOW_VALUES[opener]
    if opener in "[{":
        fix += f", or quote the value if the {opener} is part of the text: {key}='{text}'"
    return None, f"malformed value; expected {expected}; {fix}"


def _blame_overrides(problems: list[str], overrides: list[str]) -> tuple[list[str], bool]:
    """Name the command-line override behind each problem it caused; True when every
    problem came from one (the config file is then not to blame)."""
    given = {item.partition("=")[0]: item for item in overrides}
    named, blamed = [], 0
    for problem in problems:
        key = problem.partition(":")[0]
        if problem.startswith("override "):
            blamed += 1
        elif key in given:
            problem, blamed = f"{problem} (from the override {given[key]})", blamed + 1
        named.append(problem)
    return named, blamed == len(problems)


def _key_lines(path: Path) -> dict[str, int]:
    """The 1-based line of every dotted key in a YAML file (`training.batch_size`: 14)."""
    def walk(node: Any, prefix: str) -> None:
        if not isinstance(node, yaml.MappingNode):
            return
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                lines[prefix + key.value] = key.start_mark.line + 1
                walk(value, f"{prefix}{key.value}.")

    lines: dict[str, int] = {}
    try:
        walk(yaml.compose(path.read_text(encoding="utf-8")), "")
    except (yaml.YAMLError, OSError, UnicodeDecodeError):
        pass  # the file was read once already; without lines the problems still stand
    return lines


def _with_lines(problems: list[str], lines: dict[str, int]) -> list[str]:
    """Prefix each problem about a key of the file with that key's line."""
    out = []
    for problem in problems:
        key = problem.partition(":")[0]
        out.append(f"line {lines[key]}: {problem}" if key in lines and
                   "(from the override" not in problem else problem)
    return out


def _deep_copy(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in raw.items()}


def _build(cls: type, raw: Any, prefix: str, problems: list[str]) -> Any:
    if not isinstance(raw, dict):
        problems.append(f"{prefix.rstrip('.') or 'config'}: expected a mapping, found {raw!r}")
        return cls()
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            problems.append(f"{prefix}{key}: unknown key{hint}")
    values = {}
    for name, f in fields.items():
        if name not in raw:
            continue
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, raw[name], f"{prefix}{name}.", problems)
        else:
            values[name] = _check_value(f"{prefix}{name}", raw[name], hint, f.metadata, problems)
    return cls(**values)


def _check_value(key: str, value: Any, hint: Any, meta: Any, problems: list[str]) -> Any:
    choices = meta.get("choices")
    word = {False: "no", True: "yes"}.get(value) if isinstance(value, bool) else None
    if hint is str and choices and word in choices:
        value = word  # YAML reads a bare `no` (or `off`) as false: mixed_precision: no
    value, ok = _coerce(value, hint)
    if not ok:
        problems.append(f"{key}: expected {_type_name(hint)}, found {value!r}")
        return value
    if choices and value is not None and value not in choices:
        problems.append(f"{key}: expected one of {', '.join(map(str, choices))}, found {value!r}")
    minimum, maximum = meta.get("minimum"), meta.get("maximum")
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and not math.isfinite(value):  # .nan and .inf pass every comparison below
        problems.append(f"{key}: expected a finite number, found {value!r}")
        return value
    if minimum is not None and number and value < minimum:
        problems.append(f"{key}: must be >= {minimum}, found {value!r}")
    if maximum is not None and number and value > maximum:
        problems.append(f"{key}: must be <= {maximum}, found {value!r}")
    return value


def _coerce(value: Any, hint: Any) -> tuple[Any, bool]:
    """Return (value, ok); a single string becomes a one-item list where a list is expected."""
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        for option in args:
            coerced, ok = _coerce(value, option)
            if ok:
                return coerced, True
        return value, False
    if hint is type(None):
        return value, value is None
    if hint is Any:
        return value, True
    origin = typing.get_origin(hint)
    if origin is list:
        if isinstance(value, str):
            value = [value]
        return value, isinstance(value, list) and all(isinstance(v, str) for v in value)
    if origin is dict:
        return value, isinstance(value, dict)
    if hint is float and isinstance(value, str):
        # PyYAML reads `1e-3` (no dot) as a string; accept any numeric text.
        try:
            return float(value), True
        except ValueError:
            return value, False
    if hint is float:
        return (float(value), True) if isinstance(value, int | float) and not isinstance(
            value, bool) else (value, False)
    if hint is int:
        return value, isinstance(value, int) and not isinstance(value, bool)
    return value, isinstance(value, hint)


def _type_name(hint: Any) -> str:
    if isinstance(hint, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(hint))
    if hint is type(None):
        return "null"
    origin = typing.get_origin(hint)
    if origin is list:
        return "a list of strings"
    if origin is dict:
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        hint, str(hint))


def _resolve_paths(config: RunConfig) -> None:
    for name in ("train", "eval", "test"):
        files = getattr(config.data, name)
        setattr(config.data, name, [str(Path(_expand(p)).expanduser()) for p in files])
    sets = config.evaluation.forgetting_sets
    config.evaluation.forgetting_sets = [str(Path(_expand(p)).expanduser()) for p in sets]
    for name in ("labels_file", "json_schema"):
        value = getattr(config.objective, name)
        if isinstance(value, str):
            setattr(config.objective, name, str(Path(_expand(value)).expanduser()))


def _expand(path: str) -> str:
    """Expand ${VAR} and ${VAR:-default} in a path."""
    import os
    import re

    def sub(match: re.Match) -> str:
        name, _, default = match.group(1).partition(":-")
        return os.environ.get(name, default)

    return re.sub(r"\$\{([^}]+)\}", sub, path)


def to_dict(config: RunConfig) -> dict[str, Any]:
    """The config as plain data (for the run directory's resolved config)."""
    return dataclasses.asdict(config)

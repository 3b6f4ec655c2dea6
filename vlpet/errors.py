"""User-facing errors: one line that names the offending field or file and the fix, and the wrapper that
turns them into an exit status for every command-line entry point."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
import sys
from collections.abc import Callable, Iterable
from typing import Any


class UserError(ValueError):
    """Something the user can fix (a config value, flag, file or results table). Entry points print the
    message as one line and exit with status 2; any other exception is a bug and keeps its traceback."""


class ConfigError(UserError):
    """A config value, flag or file is invalid. The message names the field and the fix."""


# the user-info of a URL (scheme://user:secret@host): up to the last '@' of the token, so that a password
# holding an unescaped '@' is masked whole
_USERINFO = re.compile(r"([A-Za-z][\w+.-]*://[^\s:/@]*):[^\s]*@")
# a secret given as a URL parameter (?password=..., &secret_key=..., &session_token=...)
_SECRET_PARAM = re.compile(r"([?&](?:password|passwd|[a-z_]*secret[a-z_]*|[a-z_]*token)=)[^&\s]*", re.IGNORECASE)


def shown(value: Any, limit: int = 100) -> str:
    """`repr(value)`, cut to its first `limit` characters when longer: an error line stays one line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def redact(text: str) -> str:
    """`text` with every URL's password or secret key masked (`s3://KEY:***@bucket`), for anything printed."""
    return _SECRET_PARAM.sub(r"\1***", _USERINFO.sub(r"\1:***@", text))


def holds_password(url: str) -> bool:
    """Whether a URL carries a password or secret key: in its user-info, or as a parameter."""
    return bool(_USERINFO.match(url) or _SECRET_PARAM.search(url))


def entry_point(main: Callable[..., int | None]) -> Callable[..., int]:
    """Decorate a command's `main(argv=None)`: a UserError becomes `error: <message>` on stderr and exit
    status 2, Ctrl-C exit status 130 without a traceback; `main` returning None means success (0)."""

    @functools.wraps(main)
    def run(*args: Any, **kwargs: Any) -> int:
        for stream in (sys.stdout, sys.stderr):  # under a non-UTF-8 locale a '±' must not end the command
            if hasattr(stream, "reconfigure"):
                stream.reconfigure(errors="backslashreplace")
        try:
            return main(*args, **kwargs) or 0
        except UserError as err:
            print(f"error: {redact(str(err))}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:  # Ctrl-C outside the work that handles it itself (a study's trials)
            print("interrupted", file=sys.stderr)
            return 130

    return run


def closest(word: str, options: Iterable[str]) -> str:
    """A ' (did you mean X?)' hint for a misspelt key or name, or '' when nothing is close."""
    match = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def unknown(kind: str, word: str, options: Iterable[str]) -> ConfigError:
    """The error for a name that is not one of `options`, with a suggestion and the valid list."""
    options = sorted(options)
    return ConfigError(f"unknown {kind} {shown(word)}{closest(word, options)}; valid: {', '.join(options)}")


def build_dataclass(cls: type, data: dict[str, Any], where: str) -> Any:
    """`cls(**data)` for a config dataclass, with unknown keys and wrong arguments reported as
    ConfigErrors naming `where.key` and the closest valid key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping of fields, got {type(data).__name__}")
    valid = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in valid:
            raise ConfigError(f"{where}.{key} is not a valid key{closest(str(key), valid)}; valid: {', '.join(sorted(valid))}")
    try:
        return cls(**data)
    except TypeError as err:
        raise ConfigError(f"{where}: {err}") from None

"""Who may change things: the ``action_token`` secret and the loopback rule, shared by the dashboard and the API.

The token lives where Streamlit keeps secrets, ``.streamlit/secrets.toml``
(``action_token = "a long random string"``), so one secret guards the dashboard's buttons
and the HTTP API's mutating endpoints. The dashboard hands in ``st.secrets`` (which also
carries secrets a test injects); the API, which must not import Streamlit, lets this module
read the same files Streamlit reads for ``app.py``.
"""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path
from typing import Any, Mapping, Sequence

from engine.config import PROJECT_ROOT
from engine.errors import SettingsError

TOKEN_KEY = "action_token"
LOCAL_ADDRESSES = ("127.0.0.1", "localhost", "::1")


def secrets_files() -> tuple[Path, ...]:
    """The ``secrets.toml`` files Streamlit reads for ``app.py``, in its order (a later file wins).

    Streamlit's default ``secrets.files`` option: the user's ``~/.streamlit``, the current
    directory's ``.streamlit``, then the one beside the main script (the project root).
    """
    files = [Path.home() / ".streamlit" / "secrets.toml", Path.cwd() / ".streamlit" / "secrets.toml",
             PROJECT_ROOT / ".streamlit" / "secrets.toml"]
    return tuple(dict.fromkeys(files))


def action_token(*, secrets: Mapping[str, Any] | None = None, files: Sequence[Path] | None = None) -> str | None:
    """The ``action_token`` secret, or None when none is set (an empty value counts as none).

    ``secrets``: a mapping already loaded (the dashboard passes ``st.secrets``). Without it the
    ``files`` are read with :mod:`tomllib` (default :func:`secrets_files`; missing files are
    skipped, a later file wins). Raises SettingsError naming the file when one is not valid TOML.
    """
    if secrets is None:
        secrets = {}
        for path in files if files is not None else secrets_files():
            try:
                text = path.read_text(encoding="utf-8")
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as exc:
                raise SettingsError(f"cannot read the secrets file {path}: {exc.strerror}") from None
            try:
                secrets = {**secrets, **tomllib.loads(text)}
            except tomllib.TOMLDecodeError as exc:
                raise SettingsError(f"the secrets file {path} is not valid TOML ({exc}): "
                                    f'write {TOKEN_KEY} = "a long random string"') from None
    token = secrets.get(TOKEN_KEY)
    return str(token) if token else None


def is_loopback(host: str) -> bool:
    """True when a server bound to ``host`` is reachable from this machine only.

    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("::1"), is_loopback("0.0.0.0")
    (True, True, True, False)
    """
    host = (host or "").strip().strip("[]")
    if host in LOCAL_ADDRESSES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost: it may resolve to anything
        return False

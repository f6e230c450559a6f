"""
Configs for tests: :func:`initiator_config` (an initiator's section and
module sections, as a daemon's config file would hold them) and
:func:`as_config` (what the kit accepts as a config: a dict, text or a
ConfigParser).
"""

from __future__ import annotations

import configparser
import io
import textwrap
from collections.abc import Mapping
from typing import Any

from turberfield_twisted.configtext import parse_config

__all__ = ["DEMO", "DEMO_SECTION", "ConfigLike", "as_config", "initiator_config",
           "sections_config"]

#: The demo worker's module.
DEMO = "turberfield_twisted.demo.hello"
#: The demo's section in :func:`initiator_config` by default (with a secret
#: that tests check never leaks).
DEMO_SECTION: Mapping[str, str] = {
    "greeting": "hello", "secret": "s3cr3t-demo-value", "overridable": "greeting, api_key"}

#: A config as the kit takes it: a dict (of one module's keys, or of
#: sections, each a dict of keys), config text, or a ConfigParser.
ConfigLike = Mapping[str, Any] | str | configparser.ConfigParser | None


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _section(name: str, keys: Mapping[str, Any]) -> str:
    return f"[{name}]\n" + "".join(f"{key} = {_value(value)}\n" for key, value in keys.items())


def _is_sections(config: Mapping[str, Any]) -> bool:
    return bool(config) and all(isinstance(value, Mapping) for value in config.values())


def as_config(config: ConfigLike, module: str) -> configparser.ConfigParser:
    """
    A new :class:`~turberfield_twisted.configtext.Config` from ``config``: a
    dict of keys is ``module``'s section (values as strings, booleans as
    ``true``/``false``), a dict of dicts one section for each; text is
    read as a config file; a ConfigParser is copied (uninterpolated);
    None is an empty section for ``module``.
    """
    if config is None:
        config = {}
    if isinstance(config, configparser.ConfigParser):  # a Mapping too: first
        buf = io.StringIO()
        config.write(buf)
        return parse_config(buf.getvalue(), source="<test config>")
    if isinstance(config, Mapping):
        sections = config if _is_sections(config) else {module: config}
        text = "\n".join(_section(name, keys) for name, keys in sections.items())
        return parse_config(text, source="<test config>")
    return parse_config(textwrap.dedent(config), source="<test config>")


def sections_config(config: ConfigLike) -> configparser.ConfigParser:
    """As :func:`as_config`, for a whole config: a dict must be one of sections."""
    if (isinstance(config, Mapping) and not isinstance(config, configparser.ConfigParser)
            and config and not _is_sections(config)):
        raise ValueError("a whole config is a dict of sections, each a dict of keys")
    if config is None or (isinstance(config, Mapping) and not config):
        return parse_config("")
    return as_config(config, "")


def initiator_config(low: int = 21200, high: int = 21299, extra: str = "", *,
                     guid: str = "init", modules: Mapping[str, Mapping[str, Any]] | None = None,
                     **own: Any) -> configparser.ConfigParser:
    """
    A config with an initiator section ``guid`` (on 127.0.0.1, any free
    API port, child ports ``low`` to ``high``, ``ready_timeout`` 15 and
    ``stop_timeout`` 5, then the keys in ``own``), a section per module
    in ``modules`` (default: the demo's, :data:`DEMO_SECTION`), then the
    text ``extra``.
    """
    keys = {"listen_addr": "127.0.0.1", "listen_port": "0", "child_port_min": str(low),
            "child_port_max": str(high), "ready_timeout": "15", "stop_timeout": "5", **own}
    sections = {DEMO: DEMO_SECTION} if modules is None else modules
    text = _section(guid, keys) + "".join(
        "\n" + _section(name, section) for name, section in sections.items())
    return parse_config(text + "\n" + textwrap.dedent(extra))

"""The device inventory (``devices.yaml``): named targets the bench runs on.

A file looks like::

    devices:
      orin:
        kind: jetson
        host: 192.168.1.50
        user: nvidia
        identity_file: ~/.ssh/id_ed25519

``local`` (this machine) always exists, whether or not the file names it.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cidpipe.errors import ConfigError, UsageError
from cidpipe.untrusted import load_yaml_file

LOCAL_DEVICE_NAME = "local"
DEFAULT_INVENTORY_PATHS = (Path("devices.yaml"), Path("~/.config/cidpipe/devices.yaml"))
_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ENV_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class DeviceSpec(BaseModel):
    """One target. Host-key checking is on unless the entry opts out by name (see the two flags)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(LOCAL_DEVICE_NAME, description="filled in from the inventory key")
    kind: Literal["local", "ssh", "jetson"] = "ssh"
    host: str | None = None
    port: int = Field(22, ge=1, le=65535)
    user: str | None = Field(None, description="default: the ssh client's (your login, ~/.ssh/config)")
    identity_file: Path | None = None
    remote_python: str = "python3"
    workdir: str = Field("/tmp/cidpipe", description="absolute; per-run dirs + TensorRT caches live here")
    strict_host_key_checking: bool = Field(
        True, description="false (only with insecure_accept_host_key) accepts ANY key, changed ones too"
    )
    insecure_accept_host_key: bool = Field(
        False, description="lab boards: trust an unknown host key on first use (ssh accept-new)"
    )
    known_hosts_file: Path | None = Field(None, description="default: ~/.ssh/known_hosts")
    ssh_config_file: Path | None = Field(None, description="passed as ssh -F; default: ~/.ssh/config")
    connect_timeout_s: float = Field(10, gt=0)
    command_timeout_s: float = Field(600, gt=0)
    trtexec: str | None = Field(None, description="jetson: trtexec; default PATH, then /usr/src/tensorrt/bin")
    env: dict[str, str] = Field(default_factory=dict, description="environment for remote commands")

    @model_validator(mode="after")
    def _check_consistency(self) -> DeviceSpec:
        if not _NAME_PATTERN.match(self.name):
            raise ValueError(f"device name {self.name!r} must be letters, digits, '_', '.', '-'")
        if self.kind != "local" and not self.host:
            raise ValueError(f"device {self.name!r} of kind {self.kind} needs a host")
        if self.host and (self.host.startswith("-") or any(ch.isspace() for ch in self.host)):
            raise ValueError(f"device {self.name!r}: host {self.host!r} is not a host name or address")
        if self.kind == "local" and self.host:
            raise ValueError(f"device {self.name!r} is kind local but has host {self.host!r}; use kind: ssh")
        if not self.workdir.startswith("/") or self.workdir.rstrip("/") in ("", "/tmp"):
            raise ValueError(
                f"device {self.name!r}: workdir must be an absolute directory of its own, e.g. /tmp/cidpipe"
            )
        if not self.strict_host_key_checking and not self.insecure_accept_host_key:
            # Turning checks off must be spelled out: a silent MITM on a board's link would go unnoticed.
            raise ValueError(
                f"device {self.name!r}: strict_host_key_checking: false also needs "
                "insecure_accept_host_key: true"
            )
        for key in self.env:
            if not _ENV_NAME_PATTERN.match(key):
                raise ValueError(f"device {self.name!r}: env name {key!r} is not a valid variable name")
        return self

    @property
    def address(self) -> str:
        """``user@host:port`` as shown in messages (``local`` for this machine)."""
        if self.kind == "local":
            return LOCAL_DEVICE_NAME
        user = f"{self.user}@" if self.user else ""
        return f"{user}{self.host}:{self.port}"

    @property
    def host_key_policy(self) -> Literal["yes", "accept-new", "no"]:
        """The ssh StrictHostKeyChecking value this entry asks for."""
        if not self.insecure_accept_host_key:
            return "yes"
        return "accept-new" if self.strict_host_key_checking else "no"


class _InventoryFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    devices: dict[str, dict] = Field(default_factory=dict)


class Inventory(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: Path | None = None
    devices: dict[str, DeviceSpec]

    @property
    def names(self) -> list[str]:
        return list(self.devices)

    def get_device(self, name: str) -> DeviceSpec:
        """The named device; an unknown name is a one-line UsageError with a near-miss suggestion."""
        if name in self.devices:
            return self.devices[name]
        close = difflib.get_close_matches(name, self.names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        where = f" in {self.path}" if self.path else " (no devices.yaml found; only 'local' exists)"
        raise UsageError(f"unknown device {name!r}{where}; known: {', '.join(self.names)}.{hint}")


def resolve_inventory_path(path: Path | str | None) -> Path | None:
    """The explicit path, else ./devices.yaml, else ~/.config/cidpipe/devices.yaml, else None."""
    if path is not None:
        resolved = Path(path).expanduser()
        if not resolved.is_file():
            raise ConfigError(
                f"device inventory {resolved} does not exist; fix bench.inventory or create the file"
            )
        return resolved
    for candidate in DEFAULT_INVENTORY_PATHS:
        candidate = candidate.expanduser()
        if candidate.is_file():
            return candidate
    return None


def _resolve_relative(value: object, base: Path) -> object:
    # identity_file: keys/id_orin in devices.yaml means next to devices.yaml, not next to the shell's cwd.
    if value is None:
        return None
    resolved = Path(os.path.expanduser(str(value)))
    return resolved if resolved.is_absolute() else base / resolved


def _first_error(exc: ValidationError, prefix: str = "") -> str:
    error = exc.errors()[0]
    where = ".".join([prefix, *(str(part) for part in error["loc"])] if prefix else map(str, error["loc"]))
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _parse_device(name: str, entry: dict, inventory_path: Path) -> DeviceSpec:
    if name == LOCAL_DEVICE_NAME and entry.get("kind", "local") != "local":
        raise ConfigError(f"{inventory_path}: device name 'local' is reserved for this machine; rename it")
    entry.setdefault("kind", "local" if name == LOCAL_DEVICE_NAME else "ssh")
    for key in ("identity_file", "known_hosts_file", "ssh_config_file"):
        entry[key] = _resolve_relative(entry.get(key), inventory_path.parent)
    try:
        return DeviceSpec.model_validate({**entry, "name": name})
    except ValidationError as exc:
        raise ConfigError(f"{inventory_path}: {_first_error(exc, prefix=f'devices.{name}')}") from exc


def load_inventory(path: Path | str | None = None) -> Inventory:
    """Read the inventory (see :func:`resolve_inventory_path`); ``local`` is always added."""
    resolved = resolve_inventory_path(path)
    devices: dict[str, DeviceSpec] = {LOCAL_DEVICE_NAME: DeviceSpec(name=LOCAL_DEVICE_NAME, kind="local")}
    if resolved is None:
        return Inventory(path=None, devices=devices)
    raw = load_yaml_file(resolved, "device inventory", ConfigError) or {}
    try:
        parsed = _InventoryFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{resolved}: {_first_error(exc)}; expected a top-level 'devices:' mapping") \
            from exc
    for name, entry in parsed.devices.items():
        devices[str(name)] = _parse_device(str(name), dict(entry or {}), resolved)
    return Inventory(path=resolved, devices=devices)


def get_device(name: str, inventory_path: Path | str | None = None) -> DeviceSpec:
    """Shortcut: ``load_inventory(inventory_path).get_device(name)``."""
    return load_inventory(inventory_path).get_device(name)

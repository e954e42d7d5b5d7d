"""k3s and RKE2 `config.yaml`: the kube-apiserver command line the server would run.

k3s builds kube-apiserver's flags in `apiServer()` (pkg/daemons/control/server.go) as a map of defaults, then
`config.GetArgsList` applies each `kube-apiserver-arg` item, `name=value`, replacing the default of that name
(the last item of a name wins). RKE2 runs the same code and writes the result into a static pod. A config file has
no apiVersion: it is recognised by its path (`.../k3s/config.yaml`, `.../rke2/config.yaml` and their
`config.yaml.d/*.yaml` drop-ins) or named with `check --k3s-config` / `--rke2-config`.

An item in a form this reader does not follow (no `=`, or `name+=value`, which appends in newer releases) makes
that flag unreadable, never a pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from webhook.bootstrap.generated import ConfigError, Generated, unread
from webhook.bootstrap.installers import Installer, installer

INSTALLERS = ("k3s", "rke2")
ARG_KEYS = ("kube-apiserver-arg", "kube-apiserver-arg+")


def installer_of_path(path: str) -> str | None:
    """k3s or rke2 when the file sits where that installer reads its configuration."""
    parts = PurePath(path).parts
    for name in INSTALLERS:
        if len(parts) >= 2 and parts[-2] == name and parts[-1] == "config.yaml":
            return name
        if len(parts) >= 3 and parts[-3] == name and parts[-2] == "config.yaml.d" and parts[-1].endswith(".yaml"):
            return name
    return None


def _items(doc: Mapping[str, Any]) -> list[str]:
    items: list[str] = []
    for key in ARG_KEYS:
        raw = doc.get(key)
        if raw is None:
            continue
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list):
            raise ConfigError(f"{key} must be a list of name=value strings, got {type(raw).__name__}")
        items.extend(str(item) for item in raw)
    return items


def _datastore(doc: Mapping[str, Any], data: Installer, data_dir: str) -> list[tuple[str, str]]:
    endpoint = str(doc.get("datastore-endpoint") or "")
    embedded = (
        data.data.get("etcd") == "embedded"
        or bool(doc.get("cluster-init"))
        or (bool(doc.get("server")) and not endpoint)
    )
    if endpoint:
        pairs = [("etcd-servers", endpoint)] if endpoint.startswith(("http://", "https://")) else []
        for key, flag in data.setting("etcd_endpoint").items():
            if doc.get(key):
                pairs.append((flag, str(doc[key])))
        return pairs
    if embedded:
        return [(flag, value.format(dataDir=data_dir)) for flag, value in data.defaults("etcd_embedded")]
    return []  # SQLite through kine, over a local socket: no etcd TLS flags


def from_config(doc: Mapping[str, Any], name: str) -> Generated | None:
    """The kube-apiserver of a k3s or RKE2 server with this configuration; None for `disable-apiserver: true`."""
    if doc.get("disable-apiserver") is True:
        return None
    data = installer(name)
    data_dir = str(doc.get("data-dir") or data.setting("data_dir")).rstrip("/")
    args = {flag: value.format(dataDir=data_dir) for flag, value in data.defaults()}
    args.update(_datastore(doc, data, data_dir))
    unreadable: list[str] = []
    for item in _items(doc):
        text = item[2:] if item.startswith("--") else item
        flag, sep, value = text.partition("=")
        if not sep or not flag:
            unreadable.append(unread("kube_apiserver_arg_without_value"))
            continue
        if flag.endswith("+"):
            args[flag[:-1]] = unread("kube_apiserver_arg_append")
            continue
        args.pop(flag, None)
        args[flag] = value  # the last item of a name wins, written where GetArgsList puts it
    command = ["kube-apiserver", *(f"--{flag}={value}" for flag, value in args.items()), *unreadable]
    return Generated(
        installer=name,
        kind="config.yaml",
        namespace="",
        name="",
        command=tuple(command),
        image=str(data.setting("image")),
        section="kube-apiserver-arg",
        assumption=data.assumption(None),
    )

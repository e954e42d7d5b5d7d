"""What every bootstrap configuration reduces to: the kube-apiserver an installer would run, as a static pod."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def unread(what: str) -> str:
    """An item standing for arguments the installer adds in a way this reader does not follow (a JSON 6902 patch,
    an argument in a form we do not know), named by the configuration key. The kubelet leaves an undefined `$(VAR)`
    as it is, and the engine then says, for every control it could touch, that it could not read the command line:
    never a silent pass."""
    return f"$({what})"


class ConfigError(ValueError):
    """The installer itself would refuse this configuration; the message says where and why."""


@dataclass(frozen=True)
class Generated:
    """The kube-apiserver command line one configuration document produces, and where its arguments are written."""

    installer: str  # kubeadm, k3s, rke2
    kind: str  # ClusterConfiguration, KubeadmControlPlane, Cluster, config.yaml
    namespace: str
    name: str
    command: tuple[str, ...]
    image: str
    section: str  # the key to edit: apiServer.extraArgs, kube-apiserver-arg, ...
    assumption: str | None = None  # set when the installer version's defaults are not known

    def pod(self) -> dict[str, Any]:
        """The static pod this configuration would put on each control-plane node, for the engine."""
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "kube-apiserver", "namespace": "kube-system"},
            "spec": {"containers": [{"name": "kube-apiserver", "image": self.image, "command": list(self.command)}]},
        }

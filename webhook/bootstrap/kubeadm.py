"""kubeadm, Cluster API and kind configurations: the kube-apiserver command line kubeadm would write.

Follows kubeadm v1.37.2: `getAPIServerCommand` (cmd/kubeadm/app/phases/controlplane/manifests.go) builds the
defaults, etcd and authorization-mode; `ArgumentsToCommand` (cmd/kubeadm/app/util/arguments.go) applies
`apiServer.extraArgs`: the defaults sorted by name, each one that an extraArg of the same name replaces dropped
(or merged, for v1's `mergeMethod: append|prepend`), then every replacing extraArg in the order written, repeats
included. An empty value is written as `--name=`: it does not remove the flag, it empties it.

The three formats of extraArgs: v1beta3 (and Cluster API v1beta1) a map, which kubeadm's conversion turns into a
list sorted by name; v1beta4 (and Cluster API v1beta2) a list of `{name, value}`; v1 adds `mergeMethod`. kubeadm
refuses a value that is not a string; an unknown field is only warned about and dropped (found by the tests
against real kubeadm).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from webhook.bootstrap.generated import ConfigError, Generated, unread
from webhook.bootstrap.installers import installer
from webhook.cmdline.images import image_tag, image_version
from webhook.core import yaml_text

KUBEADM_GROUP = "kubeadm.k8s.io"
KUBEADM_VERSIONS = ("v1beta3", "v1beta4", "v1")
CAPI_CONTROL_PLANE_GROUP = "controlplane.cluster.x-k8s.io"
KIND_GROUP = "kind.x-k8s.io"
MERGE_METHODS = ("", "append", "prepend")


@dataclass(frozen=True)
class Arg:
    """kubeadm's `Arg`: one extra argument."""

    name: str
    value: str
    merge: str = ""


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def read_extra_args(raw: Any, style: str, where: str) -> list[Arg]:
    """extraArgs in one of the three formats (`map`, `list`, `merge`), refused where kubeadm's decoder refuses."""
    if raw is None:
        return []
    if style == "map":
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where} must be a map of flag names to strings, got {type(raw).__name__}")
        args = []
        for name, value in raw.items():
            if not isinstance(value, str):
                raise ConfigError(f"{where}.{name} must be a string, got {type(value).__name__} (kubeadm refuses it)")
            args.append(Arg(str(name), value))
        return sorted(args, key=lambda a: a.name)
    if not isinstance(raw, list):
        raise ConfigError(f"{where} must be a list of {{name, value}}, got {type(raw).__name__}")
    allowed = {"name", "value", "mergeMethod"} if style == "merge" else {"name", "value"}
    args = []
    for index, item in enumerate(raw):
        at = f"{where}[{index}]"
        if not isinstance(item, Mapping):
            raise ConfigError(f"{at} must be a {{name, value}} object, got {type(item).__name__}")
        # An unknown field (v1's mergeMethod in a v1beta4 file) is only a warning to kubeadm ("strict decoding
        # error"): it decodes again leniently, drops the field and goes on. A value of the wrong type is an error.
        for key in sorted(allowed & set(item)):
            if not isinstance(item[key], str):
                got = type(item[key]).__name__
                raise ConfigError(f"{at}.{key} must be a string, got {got} (kubeadm refuses it)")
        merge = str(item.get("mergeMethod", "")) if "mergeMethod" in allowed else ""
        if merge not in MERGE_METHODS:
            raise ConfigError(f"{at}.mergeMethod must be append or prepend, got {merge!r}")
        args.append(Arg(str(item.get("name", "")), str(item.get("value", "")), merge))
    return args


def _last(args: list[Arg], name: str) -> Arg | None:
    return next((a for a in reversed(args) if a.name == name), None)


def _merge(base: str, arg: Arg) -> str:
    if arg.merge == "append":
        return base + arg.value
    if arg.merge == "prepend":
        return arg.value + base
    return arg.value


def arguments_to_command(base: list[Arg], overrides: list[Arg]) -> list[str]:
    """kubeadm's ArgumentsToCommand."""
    by_name = {arg.name: arg for arg in overrides}  # the last of each name, as Go's map assignment keeps
    tail = [f"--{a.name}={a.value}" for a in overrides if not a.merge]
    command = []
    for arg in sorted(base, key=lambda a: (a.name, a.value)):
        override = by_name.get(arg.name)
        if override is not None and not override.merge:
            continue
        value = _merge(arg.value, override) if override is not None else arg.value
        command.append(f"--{arg.name}={value}")
    return command + tail


_AUTHZ_MODES = ("Node", "RBAC", "Webhook", "ABAC", "AlwaysAllow", "AlwaysDeny")


def _authz_modes(arg: Arg | None, default: str) -> str:
    """getAuthzModes: the base value of authorization-mode (what a merge method merges onto)."""
    if arg is None or not arg.value:
        return default
    modes = [m for m in arg.value.split(",") if m and m in _AUTHZ_MODES]
    if not modes:
        return default
    if not arg.merge and modes != default.split(","):
        return ",".join(modes)
    return default


def apiserver_command(cluster: Mapping[str, Any], extra: list[Arg], endpoint: Mapping[str, Any]) -> list[str]:
    """getAPIServerCommand for a ClusterConfiguration (any format), its extraArgs already read, and the node's
    localAPIEndpoint."""
    data = installer("kubeadm")
    networking = _mapping(cluster.get("networking"))
    values = {
        "certificatesDir": str(cluster.get("certificatesDir") or data.setting("certificates_dir")).rstrip("/"),
        "serviceSubnet": str(networking.get("serviceSubnet") or data.setting("service_subnet")),
        "dnsDomain": str(networking.get("dnsDomain") or data.setting("dns_domain")),
        "advertiseAddress": str(endpoint.get("advertiseAddress") or "<the node's default-route address>"),
        "bindPort": str(endpoint.get("bindPort") or data.setting("bind_port")),
    }
    base = [Arg(name, template.format(**values)) for name, template in data.defaults()]
    etcd = _mapping(cluster.get("etcd"))
    external = etcd.get("external")
    if isinstance(external, Mapping):
        endpoints = external.get("endpoints") or []
        base.append(Arg("etcd-servers", ",".join(str(e) for e in endpoints)))
        files = data.setting("etcd_external")
        if external.get("caFile"):
            base.append(Arg(files["caFile"], str(external["caFile"])))
        if bool(external.get("certFile")) != bool(external.get("keyFile")):
            # kubeadm's validation (ValidateEtcd): "either both or none of .Etcd.External.CertFile and
            # .Etcd.External.KeyFile must be set"
            raise ConfigError(
                "etcd.external: either both or none of certFile and keyFile must be set (kubeadm refuses)"
            )
        if external.get("certFile"):
            base.append(Arg(files["certFile"], str(external["certFile"])))
            base.append(Arg(files["keyFile"], str(external["keyFile"])))
    else:
        base.extend(Arg(name, template.format(**values)) for name, template in data.defaults("etcd_local"))
    if _last(extra, "authorization-config") is None:
        base.append(
            Arg(
                "authorization-mode",
                _authz_modes(_last(extra, "authorization-mode"), data.setting("authorization_mode")),
            )
        )
    return ["kube-apiserver", *arguments_to_command(base, extra)]


def _image(cluster: Mapping[str, Any], version: object) -> str:
    repository = str(cluster.get("imageRepository") or installer("kubeadm").setting("image_repository"))
    tag = str(version or "").strip()
    return f"{repository.rstrip('/')}/kube-apiserver" + (f":{tag}" if tag else "")


def _style(api_version: str) -> str:
    version = api_version.rpartition("/")[2]
    if api_version.startswith(KUBEADM_GROUP):
        return {"v1beta3": "map", "v1beta4": "list", "v1": "merge"}[version]
    return "map" if version == "v1beta1" else "list"  # Cluster API: v1beta1 maps, v1beta2 lists


def _generated(
    kind: str,
    meta: Mapping[str, Any],
    cluster: Mapping[str, Any],
    style: str,
    where: str,
    version: object,
    endpoint: Mapping[str, Any],
    unread_items: tuple[str, ...] = (),
) -> Generated:
    api_server = _mapping(cluster.get("apiServer"))
    extra = read_extra_args(api_server.get("extraArgs"), style, f"{where}.apiServer.extraArgs")
    command = [*apiserver_command(cluster, extra, endpoint), *unread_items]
    image = _image(cluster, version)
    return Generated(
        installer="kubeadm",
        kind=kind,
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        command=tuple(command),
        image=image,
        section=f"{where}.apiServer.extraArgs",
        # the version as the engine reads it, from the image tag
        assumption=installer("kubeadm").assumption(image_version(image)),
    )


def from_cluster_configuration(doc: Mapping[str, Any], init: Mapping[str, Any] | None = None) -> Generated:
    """A kubeadm ClusterConfiguration (with the InitConfiguration of the same file, when there is one)."""
    api_version = str(doc.get("apiVersion"))
    endpoint = _mapping(_mapping(init).get("localAPIEndpoint"))
    return _generated(
        "ClusterConfiguration",
        _mapping(doc.get("metadata")),
        doc,
        _style(api_version),
        "ClusterConfiguration",
        doc.get("kubernetesVersion"),
        endpoint,
    )


def from_kubeadm_control_plane(doc: Mapping[str, Any]) -> Generated:
    """A Cluster API KubeadmControlPlane or KubeadmControlPlaneTemplate: kubeadm runs with its clusterConfiguration
    on every control-plane machine, at `spec.version`."""
    kind = str(doc.get("kind"))
    spec = _mapping(doc.get("spec"))
    prefix = "spec"
    if kind == "KubeadmControlPlaneTemplate":
        spec = _mapping(_mapping(_mapping(spec.get("template")).get("spec")))
        prefix = "spec.template.spec"
    config = _mapping(spec.get("kubeadmConfigSpec"))
    init = _mapping(config.get("initConfiguration"))
    return _generated(
        kind,
        _mapping(doc.get("metadata")),
        _mapping(config.get("clusterConfiguration")),
        _style(str(doc.get("apiVersion"))),
        f"{prefix}.kubeadmConfigSpec.clusterConfiguration",
        spec.get("version"),
        _mapping(init.get("localAPIEndpoint")),
    )


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: maps merge key by key, null removes, anything else replaces (lists whole)."""
    if not isinstance(patch, Mapping):
        return patch
    out = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _kind_patches(raw: Any, where: str) -> list[Mapping[str, Any]]:
    patches = []
    for index, text in enumerate(raw or []):
        try:
            patch = yaml_text.safe_load(str(text))
        except yaml.YAMLError as err:
            raise ConfigError(f"{where}[{index}] is not YAML: {str(err).splitlines()[0]}") from None
        if isinstance(patch, Mapping) and patch.get("kind") == "ClusterConfiguration":
            patches.append(patch)
    return patches


def from_kind_cluster(doc: Mapping[str, Any]) -> Generated:
    """A kind Cluster: kind writes a kubeadm ClusterConfiguration of its own (no extraArgs for the flags we judge)
    and merges every `kubeadmConfigPatches` document of kind ClusterConfiguration into it, the cluster's first and
    then each control-plane node's. JSON 6902 patches are not followed: they make the command line unreadable."""
    patches = _kind_patches(doc.get("kubeadmConfigPatches"), "kubeadmConfigPatches")
    nodes = [n for n in doc.get("nodes") or [{"role": "control-plane"}] if isinstance(n, Mapping)]
    control_planes = [n for n in nodes if n.get("role", "control-plane") == "control-plane"]
    for index, node in enumerate(control_planes[:1]):
        patches += _kind_patches(node.get("kubeadmConfigPatches"), f"nodes[{index}].kubeadmConfigPatches")
    cluster: Mapping[str, Any] = {}
    for patch in patches:
        cluster = merge_patch(cluster, patch)
    json6902 = [
        p
        for p in [*(doc.get("kubeadmConfigPatchesJSON6902") or [])]
        + [p for n in control_planes for p in n.get("kubeadmConfigPatchesJSON6902") or []]
        if isinstance(p, Mapping) and p.get("kind") in (None, "ClusterConfiguration")
    ]
    tag = image_tag(str(control_planes[0].get("image") or "")) if control_planes else ""
    # A patch's own apiVersion says how its extraArgs are written; kind's default config is v1beta3 before 1.31.
    api_version = str(cluster.get("apiVersion") or "kubeadm.k8s.io/v1beta3")
    style = _style(api_version) if api_version.startswith(KUBEADM_GROUP) else "map"
    return _generated(
        "Cluster",
        _mapping(doc.get("metadata")) or {"name": str(doc.get("name") or "")},
        cluster,
        style,
        "kubeadmConfigPatches (ClusterConfiguration)",
        tag or None,
        {},
        (unread("kubeadmConfigPatchesJSON6902"),) if json6902 else (),
    )


def recognise(doc: Mapping[str, Any], init: Mapping[str, Any] | None = None) -> Generated | None:
    """The Generated for a kubeadm-family document, None for any other."""
    api_version = str(doc.get("apiVersion") or "")
    kind = doc.get("kind")
    group, _, version = api_version.rpartition("/")
    if group == KUBEADM_GROUP and kind == "ClusterConfiguration":
        if version not in KUBEADM_VERSIONS:
            raise ConfigError(f"kubeadm ClusterConfiguration {api_version} is not a format kubeadm reads")
        return from_cluster_configuration(doc, init)
    if group == CAPI_CONTROL_PLANE_GROUP and kind in ("KubeadmControlPlane", "KubeadmControlPlaneTemplate"):
        return from_kubeadm_control_plane(doc)
    if group == KIND_GROUP and kind == "Cluster":
        return from_kind_cluster(doc)
    return None


__all__ = ["Arg", "ConfigError", "Generated", "arguments_to_command", "recognise"]

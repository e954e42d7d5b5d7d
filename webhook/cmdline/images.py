"""Container image references: the program an image runs and the Kubernetes version in its tag."""

from __future__ import annotations

import re


def image_name(image: str) -> str:
    # registry.k8s.io/kube-apiserver:v1.30.0@sha256:... -> kube-apiserver
    """The program an image is named after: `registry.k8s.io/kube-apiserver:v1.30.0@sha256:…` -> `kube-apiserver`."""
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


# The release images were once published per architecture (`kube-apiserver-amd64:v1.8.1`, `hyperkube-arm64`):
# kubernetes build/lib/release.sh, the architectures of KUBE_SUPPORTED_SERVER_PLATFORMS.
_ARCH_SUFFIX = re.compile(r"-(?:amd64|arm64|arm|ppc64le|s390x)$")
APISERVER_IMAGES = frozenset({"kube-apiserver", "hyperkube"})


def image_program(image: str) -> str:
    """The program an image is named after, without an architecture suffix: `kube-apiserver-arm64` ->
    `kube-apiserver`."""
    return _ARCH_SUFFIX.sub("", image_name(image))


def is_apiserver_image(image: str) -> bool:
    """A kube-apiserver or hyperkube image: whatever it is told to run, it holds the kube-apiserver binary."""
    return image_program(image) in APISERVER_IMAGES


_VERSION = re.compile(r"v?(\d+)\.(\d+)(?:\.\d+)?")


def image_tag(image: str) -> str:
    """The tag of an image reference, without the digest: `kindest/node:v1.37.2@sha256:…` -> `v1.37.2`."""
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    return last.partition(":")[2]


def image_version(image: str) -> tuple[int, int] | None:
    """(major, minor) from an image tag like `kube-apiserver:v1.28.3` or `hyperkube:v1.5.1_coreos.0`."""
    match = _VERSION.match(image_tag(image))
    if not match:
        return None
    return int(match.group(1)), int(match.group(2))

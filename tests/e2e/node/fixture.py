"""The node suite's session fixture: one node for every tests/e2e/test_node_*.py, stopped (no process, mount or
cgroup left) even when a test fails."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.controlplane import KUBE_BIN
from tests.e2e.node.image import ARCHIVE, scratch_image
from tests.e2e.node.node import APISERVER_IMAGE, SANDBOX_IMAGE, Node, unavailable


def node_images() -> list[Path]:
    """The project's image from `make image`, a sandbox image and the kube-apiserver image, both FROM scratch."""
    images = ARCHIVE.parent
    return [
        ARCHIVE,
        scratch_image(KUBE_BIN / "pause", SANDBOX_IMAGE, images / "pause.oci.tar"),
        scratch_image(KUBE_BIN / "kube-apiserver", APISERVER_IMAGE, images / "kube-apiserver.oci.tar"),
    ]


def node_unavailable() -> str | None:
    reason = unavailable()
    if reason is None and not ARCHIVE.is_file():
        reason = f"the image is not built ({ARCHIVE} missing): `make image` builds it"
    return reason


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    reason = node_unavailable()
    if reason:
        message = f"the node suite cannot run here: {reason}"
        if os.environ.get("REQUIRE_E2E"):
            pytest.fail(message)
        pytest.skip(message)
    one = Node(tmp_path_factory.mktemp("node"), node_images())
    one.start()
    print(f"node up in {one.timings['up']:.1f} s (images imported in {one.timings['images']:.1f} s)")
    yield one
    errors = one.stop()
    assert not errors, errors

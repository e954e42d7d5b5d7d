"""`make image`: the project's image built on this machine without any registry.

The Dockerfile is built exactly as a user builds it, with one build argument: `PYTHON_IMAGE` names a base image
made here from Debian packages by mmdebstrap (bookworm: Python 3.11, as the default base). Only that test base
carries the host's local CA certificates, so that pip inside the build trusts what the host's pip trusts; the
Dockerfile and the final image's own layers never see them. buildah builds it (`--isolation chroot`, no daemon)
and writes the image as an OCI archive, which containerd imports.

python -m tests.e2e.node.image [--tag apiserver-tls-guard:0.1.0] [--out .image/apiserver-tls-guard.oci.tar]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.e2e.node.host import ensure_tools

ROOT = Path(__file__).resolve().parents[3]
ARCHIVE = ROOT / ".image" / "apiserver-tls-guard.oci.tar"
TAG = "apiserver-tls-guard:0.1.0"
LOCAL_CA = Path("/usr/local/share/ca-certificates")
SUITE = "bookworm"
# python-is-python3: the Dockerfile runs `python -m venv`, as in the python:*-slim images.
INCLUDE = "python3,python3-venv,python-is-python3,ca-certificates"


def _run(*argv: str, cwd: Path | None = None) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout[-2000:]}{result.stderr[-4000:]}"
        )
    return result.stdout


def _local_cas() -> list[Path]:
    return sorted(LOCAL_CA.glob("**/*.crt")) if LOCAL_CA.is_dir() else []


def base_name() -> str:
    """The test base's name: a digest of what makes it, so a changed CA or package list makes a new one."""
    digest = hashlib.sha256(f"{SUITE} {INCLUDE}".encode())
    for ca in _local_cas():
        digest.update(ca.read_bytes())
    return f"localhost/apiserver-tls-guard-test-base:{SUITE}-{digest.hexdigest()[:12]}"


def _has_image(name: str) -> bool:
    return subprocess.run(["buildah", "inspect", "--type", "image", name], capture_output=True).returncode == 0


def build_base(name: str) -> None:
    with tempfile.TemporaryDirectory(prefix="tls-guard-base-") as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        hooks = []
        if _local_cas():
            hooks = [
                f'--customize-hook=cp -r {LOCAL_CA}/. "$1{LOCAL_CA}/"',
                '--customize-hook=chroot "$1" update-ca-certificates',
            ]
        _run("mmdebstrap", "--variant=minbase", f"--include={INCLUDE}", *hooks, SUITE, str(rootfs))
        container = _run("buildah", "from", "scratch").strip()
        try:
            _run("buildah", "add", container, str(rootfs), "/")
            _run("buildah", "config", "--cmd", "python3", "--env", "LANG=C.UTF-8", container)
            _run("buildah", "commit", "--rm", container, name)
        except BaseException:
            subprocess.run(["buildah", "rm", container], capture_output=True)
            raise


def published(tag: str = TAG) -> str:
    """The fully qualified reference the chart and the overlays use by default for this tag's version."""
    from release.pin import chart_image

    return f"{chart_image(ROOT)}:{tag.rsplit(':', 1)[-1]}"


def build(tag: str = TAG, out: Path = ARCHIVE) -> Path:
    missing = ensure_tools(["mmdebstrap", "buildah"])
    if missing:
        raise RuntimeError(f"cannot build the image: {', '.join(missing)} missing (Debian: apt-get install)")
    base = base_name()
    start = time.monotonic()
    if not _has_image(base):
        build_base(base)
        print(f"base image {base} in {time.monotonic() - start:.0f} s", flush=True)
    start = time.monotonic()
    local = f"localhost/{tag}"
    _run(
        "buildah", "bud", "--isolation", "chroot", "--pull=never", "--layers=false", "--network", "host",
        "--build-arg", f"PYTHON_IMAGE={base}", "-t", local, "-f", "Dockerfile", ".",
        cwd=ROOT,
    )  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    # The archive names the image as the chart's and the overlays' default reference (the published registry path,
    # release/pin.py keeps them equal), so what the node pulls is what a user's cluster would pull.
    _run("buildah", "push", local, f"oci-archive:{out}:{published(tag)}")
    size = out.stat().st_size
    print(f"image {tag} in {time.monotonic() - start:.0f} s: {out} ({size / 1e6:.0f} MB)", flush=True)
    return out


def scratch_image(binary: Path, reference: str, out: Path) -> Path:
    """A `FROM scratch` image of one static binary at /usr/local/bin, its entrypoint; rebuilt when the binary is
    newer than the archive. The node suite's sandbox ("pause") and kube-apiserver images."""
    if out.exists() and out.stat().st_mtime >= binary.stat().st_mtime:
        return out
    container = _run("buildah", "from", "scratch").strip()
    try:
        _run("buildah", "copy", container, str(binary), f"/usr/local/bin/{binary.name}")
        _run(
            "buildah", "config", "--env", "PATH=/usr/local/bin", "--entrypoint", json.dumps([binary.name]),
            container,
        )  # fmt: skip
        image = f"localhost/{reference.rsplit('/', 1)[-1]}"
        _run("buildah", "commit", "--rm", container, image)
    except BaseException:
        subprocess.run(["buildah", "rm", container], capture_output=True)
        raise
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    _run("buildah", "push", image, f"oci-archive:{out}:{reference}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", default=TAG)
    parser.add_argument("--out", type=Path, default=ARCHIVE)
    args = parser.parse_args()
    try:
        build(args.tag, args.out)
    except RuntimeError as err:
        print(err, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

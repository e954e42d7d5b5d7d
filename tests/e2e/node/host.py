"""What the host must provide for the node suite, installed from Debian packages when missing.

Only root on Debian can install them; anywhere else `missing_tools` names what is absent so that the caller can
skip (or, under REQUIRE_E2E, fail) saying why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

# command -> the Debian package that ships it
PACKAGES = {
    "mmdebstrap": "mmdebstrap",
    "buildah": "buildah",
    "iptables": "iptables",
    "socat": "socat",
    "conntrack": "conntrack",
    "/usr/lib/cni/bridge": "containernetworking-plugins",
    "/usr/include/seccomp.h": "libseccomp-dev",  # runc's seccomp filter is cgo on libseccomp
}


def _present(command: str) -> bool:
    return os.path.exists(command) if command.startswith("/") else shutil.which(command) is not None


def missing_tools(commands: list[str] | None = None) -> list[str]:
    return [c for c in (commands or list(PACKAGES)) if not _present(c)]


def ensure_tools(commands: list[str] | None = None) -> list[str]:
    """Install the Debian packages of what is missing (root on Debian only); returns what is still missing."""
    missing = missing_tools(commands)
    if missing and os.geteuid() == 0 and shutil.which("apt-get") and os.path.exists("/etc/debian_version"):
        packages = sorted({PACKAGES[c] for c in missing})
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
        if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
            # A fresh machine may have no package lists yet.
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)
            subprocess.run(install, env=env, capture_output=True, check=False)
    return missing_tools(commands)


if __name__ == "__main__":
    # python -m tests.e2e.node.host [command ...]: install what is missing, fail naming what still is.
    still = ensure_tools(sys.argv[1:] or None)
    if still:
        print(
            f"missing: {', '.join(still)} (Debian packages: {', '.join(PACKAGES[c] for c in still)})", file=sys.stderr
        )
    sys.exit(1 if still else 0)

"""The committed flag types (webhook/cmdline/apiserver_flags.py) are the built kube-apiserver's own: pflag's
`--help` lists every flag with its type word, none for a boolean (webhook/cmdline/pflag_help.py)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import require_built
from tests.e2e.controlplane import KUBE_BIN
from webhook.cmdline import apiserver_flags
from webhook.cmdline.flags import parse_flags
from webhook.cmdline.pflag_help import binary_help, parse_help


def test_committed_flag_types_match_the_built_binary() -> None:
    binary = KUBE_BIN / "kube-apiserver"
    require_built(binary)
    booleans, lists = parse_help(binary_help(str(binary)))
    assert booleans == apiserver_flags.BOOLEAN_FLAGS, "run `make flag-types`"
    assert lists == apiserver_flags.LIST_FLAGS, "run `make flag-types`"
    # Issue 19.7, as the binary has it: a path, not a boolean; the two emulation flags are booleans.
    assert "allow-metric-labels-manifest" not in booleans
    assert {"emulation-forward-compatible", "runtime-config-emulation-forward-compatible"} <= booleans


ARGVS = [
    # issue 19.7: a path, not a boolean, so it takes the next word; two booleans that never do
    ["--allow-metric-labels-manifest", "--client-ca-file=/x"],
    ["--emulation-forward-compatible", "--client-ca-file=/x", "--runtime-config-emulation-forward-compatible"],
    ["--tls-cert-file", "--anonymous-auth=false", "--profiling"],
]


@pytest.mark.parametrize("argv", ARGVS, ids=lambda argv: argv[0])
def test_flags_read_as_the_real_kube_apiserver_prints_them(argv: list[str], tmp_path: Path) -> None:
    """kube-apiserver --v=1 logs every flag as it parsed it (`FLAG: --name="value"`, component-base
    cli/flag PrintFlags) before it checks anything; parse_flags must agree for each flag named here."""
    binary = KUBE_BIN / "kube-apiserver"
    require_built(binary)
    result = subprocess.run(
        [str(binary), *argv, "--v=1"], capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path
    )
    printed = dict(re.findall(r'FLAG: --([a-z0-9-]+)="(.*)"', result.stderr))
    ours = parse_flags(argv)
    assert ours.names(), argv
    for name in ours.names():  # what we read as given; whatever we did not (a swallowed flag) keeps its default
        assert name in printed, (name, result.stderr[-2000:])
        assert ours.value(name) == printed[name], name

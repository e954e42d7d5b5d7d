"""Issue 19, points 5 and 6: the shell's positional parameters and the variables a script sets, read as dash and
bash run them. Every readable case is run by the real dash and bash on this machine (a stand-in `kube-apiserver`
on PATH prints the words it gets), and the reader must give the same words; the unreadable cases must fail as
"could not read". Rules: POSIX XCU 2.5.2 (special parameters), 2.6.2 (parameter expansion, `:` treating an empty
value as unset), 2.6.5 (field splitting), 2.9.5 (a function's operands), the `set`, `shift`, `export`, `readonly`
special builtins; `local` as dash and bash have it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import cli
from webhook.cmdline.locate import apiserver_containers
from webhook.core.engine import evaluate
from webhook.core.policy import Policy

KEYS = "--tls-cert-file=/pki/apiserver.crt --tls-private-key-file=/pki/apiserver.key"
GOOD = f"{KEYS} --client-ca-file=/pki/ca.crt"
SHELLS = [name for name in ("dash", "bash") if shutil.which(name)]

# name: (script, words after it ($0 $1 ...), pod env as name -> value)
READABLE: dict[str, tuple[str, list[str], dict[str, str]]] = {
    "set-dashdash": (f'set -- {GOOD}; exec kube-apiserver "$@"', [], {}),
    "set-without-dashdash": (f'set -e kas {GOOD}; shift; exec kube-apiserver "$@"', [], {}),
    "set-options-keep-parameters": ('set -eu; exec kube-apiserver "$@"', ["sh", *GOOD.split()], {}),
    "shift": (f'set -- --v=2 {GOOD}; shift; exec kube-apiserver "$@"', [], {}),
    "shift-n": ('shift 2; exec kube-apiserver "$@"', ["sh", "a", "b", *GOOD.split()], {}),
    "shift-drops-a-needed-flag": (f'set -- {GOOD}; shift; exec kube-apiserver "$@"', [], {}),
    "dollar-one-and-count": ('exec kube-apiserver "$1" "$2" "$3" --v=$#', ["sh", *GOOD.split()], {}),
    "dollar-star": ("exec kube-apiserver $*", ["sh", GOOD], {}),
    "quoted-dollar-star-is-one-word": ('exec kube-apiserver "$*"', ["sh", *GOOD.split()], {}),
    "function-operands": (f'run() {{ exec kube-apiserver "$@"; }}; run {GOOD}', [], {}),
    "function-shift-is-its-own": (f'run() {{ shift; exec kube-apiserver "$@"; }}; run --v=2 {GOOD}', [], {}),
    "function-set-does-not-leak": (f'f() {{ set -- x; }}; set -- {GOOD}; f; exec kube-apiserver "$@"', [], {}),
    "subshell-function-body-keeps-nothing": (
        f'f() ( FLAGS=--v=2 ); FLAGS="{GOOD}"; f; exec kube-apiserver $FLAGS',
        [],
        {},
    ),
    "script-variables": (
        "PKI=/etc/kubernetes/pki; CA=$PKI/ca.crt; exec kube-apiserver --tls-cert-file=$PKI/a.crt "
        '--tls-private-key-file="${PKI}/a.key" --client-ca-file=$CA',
        [],
        {},
    ),
    "export-readonly-local": (
        "export PKI=/pki; readonly KEY=$PKI/k; f() { local CA=/pki/ca.crt; exec kube-apiserver "
        "--tls-cert-file=$PKI/c --tls-private-key-file=$KEY --client-ca-file=$CA; }; f",
        [],
        {},
    ),
    "unquoted-variable-splits": (f'FLAGS="{GOOD}"; exec kube-apiserver $FLAGS', [], {}),
    "quoted-variable-is-one-word": (f'FLAGS="{GOOD}"; exec kube-apiserver "$FLAGS"', [], {}),
    "pod-env-value": ("exec kube-apiserver $FLAGS", [], {"FLAGS": GOOD}),
    "pod-env-overrides-default": ('exec kube-apiserver ${FLAGS:-"--v=2"}', [], {"FLAGS": GOOD}),
    "default-when-unset": (f"unset CA; exec kube-apiserver {KEYS} --client-ca-file=${{CA:-/pki/ca.crt}}", [], {}),
    "colon-default-when-empty": (
        f"exec kube-apiserver {KEYS} --client-ca-file=${{CA:-/pki/ca.crt}}",
        [],
        {"CA": ""},
    ),
    "dash-default-keeps-empty": (
        f"exec kube-apiserver {KEYS} --client-ca-file=${{CA-/pki/ca.crt}}",
        [],
        {"CA": ""},
    ),
    "assign-default": (f"unset P; : ${{P:=/pki}}; exec kube-apiserver {KEYS} --client-ca-file=$P/ca.crt", [], {}),
    "assign-default-no-colon-keeps-empty": ("P=; : ${P=/pki}; exec kube-apiserver --client-ca-file=$P/ca.crt", [], {}),
    "alternative-when-set": (f"CA=x; exec kube-apiserver {KEYS} ${{CA:+--client-ca-file=/pki/ca.crt}}", [], {}),
    "alternative-colon-not-when-empty": (
        f"CA=; exec kube-apiserver {KEYS} ${{CA:+--client-ca-file=/pki/ca.crt}}",
        [],
        {},
    ),
    "alternative-plus-when-empty": (
        f"CA=; exec kube-apiserver {KEYS} ${{CA+--client-ca-file=/pki/ca.crt}}",
        [],
        {},
    ),
    "default-word-splits-unquoted": ("unset F; exec kube-apiserver ${F:---v=2 --client-ca-file=/pki/ca.crt}", [], {}),
    "default-word-quoted-part-stays": ('unset F; exec kube-apiserver ${F:-"--v=2 --x"} --client-ca-file=/c', [], {}),
    "empty-unquoted-makes-no-word": ('E=; exec kube-apiserver $E --client-ca-file=/c "$E"', [], {}),
}


def _container(script: str, words: list[str], env: dict[str, str]) -> dict[str, Any]:
    return {
        "name": "kas",
        "image": "quay.io/example/tools:1",
        "command": ["/bin/sh", "-c", script, *words],
        "env": [{"name": k, "value": v} for k, v in env.items()],
    }


def _real_words(shell: str, script: str, words: list[str], env: dict[str, str], tmp_path: Path) -> list[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "kube-apiserver"
    fake.write_text('#!/bin/sh\nprintf "%s\\0" "$@" > "$OUT"\n')
    fake.chmod(0o755)
    out = tmp_path / f"{shell}.out"
    base = {"PATH": f"{bin_dir}:/usr/bin:/bin", "OUT": str(out)}
    subprocess.run([shell, "-c", script, *words], env={**base, **env}, check=True, timeout=10)
    return out.read_bytes().decode().split("\0")[:-1]


@pytest.mark.parametrize("case", sorted(READABLE))
def test_the_reader_gives_the_words_dash_and_bash_give(case: str, tmp_path: Path) -> None:
    script, words, env = READABLE[case]
    [found] = apiserver_containers({"containers": [_container(script, words, env)]})
    for shell in SHELLS:
        assert list(found.args) == _real_words(shell, script, words, env, tmp_path), (case, shell)
    if not SHELLS:
        pytest.skip("neither dash nor bash is installed")


def _failing(container: dict[str, Any]) -> dict[str, str]:
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "kas", "namespace": "kube-system"}}
    obj["spec"] = {"containers": [container]}
    result = cli("check", "--format", "json", "-", stdin=json.dumps(obj))
    assert result.returncode in (0, 1), result.stderr
    found = {f["control"]: f["detail"] for f in json.loads(result.stdout)["findings"]}
    assert found == {f.key: f.detail for f in evaluate(obj, Policy()).findings}  # the engine says the same
    return found


@pytest.mark.parametrize("case", ["set-dashdash", "function-operands", "script-variables", "colon-default-when-empty"])
def test_readable_forms_pass_through_check(case: str) -> None:
    script, words, env = READABLE[case]
    assert not {"tls-cert-and-key", "client-ca-file"} & set(_failing(_container(script, words, env)))


@pytest.mark.parametrize(
    "case",
    ["shift-drops-a-needed-flag", "quoted-dollar-star-is-one-word", "dash-default-keeps-empty",
     "alternative-colon-not-when-empty", "quoted-variable-is-one-word"],
)  # fmt: skip
def test_readable_forms_that_lose_a_flag_fail_through_check(case: str) -> None:
    script, words, env = READABLE[case]
    found = _failing(_container(script, words, env))
    assert {"tls-cert-and-key", "client-ca-file"} & set(found), found
    assert not any(detail.startswith("could not read") for detail in found.values()), found


UNKNOWN: dict[str, tuple[str, list[dict[str, Any]]]] = {
    # name: (script, pod env): the client CA's value cannot be known before the pod runs
    "image-env": (f"exec kube-apiserver {KEYS} --client-ca-file=${{CA:-/pki/ca.crt}}", []),
    "value-from": (
        f"exec kube-apiserver {KEYS} --client-ca-file=$CA",
        [{"name": "CA", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['ca']"}}}],
    ),
    "command-substitution": (f"CA=$(cat /etc/ca-path); exec kube-apiserver {KEYS} --client-ca-file=$CA", []),
    "read": (f"read CA < /etc/ca-path; exec kube-apiserver {KEYS} --client-ca-file=$CA", []),
    "loop": (f"CA=/pki/ca.crt; for f in /x/*; do CA=; done; exec kube-apiserver {KEYS} --client-ca-file=$CA", []),
    "loop-assigns-later": (
        f"CA=/pki/ca.crt; while true; do kube-apiserver {KEYS} --client-ca-file=$CA; CA=; done",
        [],
    ),
    "branch": (
        f"CA=/pki/ca.crt; if [ -f /x ]; then CA=; fi; exec kube-apiserver {KEYS} --client-ca-file=$CA",
        [],
    ),
    "and-or": (f"CA=/pki/ca.crt; test -f /x && CA=; exec kube-apiserver {KEYS} --client-ca-file=$CA", []),
    "source": (f"CA=/pki/ca.crt; . /etc/default/kas; exec kube-apiserver {KEYS} --client-ca-file=$CA", []),
    "arithmetic": (f"N=1; (( N = 0 )); exec kube-apiserver {GOOD} --v=$N --client-ca-file$N=/x", []),
    "positional-unknown-after-conditional-set": (f'set -- {GOOD}; [ -f /x ] && set --; exec kube-apiserver "$@"', []),
}


@pytest.mark.parametrize("case", sorted(UNKNOWN))
def test_what_cannot_be_known_fails_as_could_not_read(case: str) -> None:
    script, env = UNKNOWN[case]
    container = {"name": "kas", "image": "quay.io/example/tools:1", "command": ["sh", "-c", script], "env": env}
    found = _failing(container)
    assert "client-ca-file" in found, (case, found)
    assert found["client-ca-file"].startswith("could not read the command line"), (case, found)


def test_the_stand_in_really_is_run_by_the_shells(tmp_path: Path) -> None:
    """The oracle above is only worth something if the real shells ran: check one by hand."""
    for shell in SHELLS:
        assert _real_words(shell, 'set -- a "b c"; exec kube-apiserver "$@" $#', [], {}, tmp_path) == ["a", "b c", "2"]
    assert os.environ.get("PATH") is not None

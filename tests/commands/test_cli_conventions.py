"""The command line's conventions (issue 24, item 13): help on every option with its default, `version`,
`completion` for bash, zsh and fish (run in the real shells where they are installed), the JSON report's schema
version and line numbers, and the exit codes of `check` (warn-mode findings, nothing read)."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.admission.test_http import SEEDS_MISSING
from tests.conftest import cli
from tests.offline.test_check_cli import _proc, pod_yaml
from webhook import __version__
from webhook.cli import build_parser

PROG = "apiserver-tls-guard"


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    [action] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


# --- help ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", sorted(_subparsers()))
def test_every_option_says_what_it_is_for(command: str) -> None:
    parser = _subparsers()[command]
    missing = [a.option_strings[0] for a in parser._actions if a.option_strings and not (a.help or "").strip()]
    assert missing == []


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        ("serve", "HTTPS port (default: 8443)"),
        ("serve", "every address family"),  # --host: empty by default (dual stack)
        ("check", "report format (default: text)"),
        ("check", "(default: /proc)"),
        ("review", "(default: https://127.0.0.1:8443)"),
        ("review", "(default: certs/ca.crt)"),
        ("certs", "(default: apiserver-tls-guard)"),
        ("serve", "(default: 0.0)"),  # --audit-interval: a zero is shown (0 == False in Python)
    ],
)
def test_help_shows_defaults(command: str, shown: str) -> None:
    result = cli(command, "--help")
    assert result.returncode == 0
    assert shown in " ".join(result.stdout.split())  # argparse wraps lines


@pytest.mark.parametrize("command", sorted(_subparsers()))
def test_help_shows_no_empty_defaults(command: str) -> None:
    text = " ".join(cli(command, "--help").stdout.split())
    assert "(default: None)" not in text and "(default: False)" not in text and "(default: [])" not in text


# --- version ---------------------------------------------------------------------------------------------


def test_version_command_and_flag_agree() -> None:
    assert cli("version").stdout == f"{PROG} {__version__}\n"
    assert cli("--version").stdout == f"{PROG} {__version__}\n"
    as_json = json.loads(cli("version", "--format", "json").stdout)
    assert as_json["version"] == __version__ and as_json["python"].count(".") == 2


# --- completion ------------------------------------------------------------------------------------------


def _script(shell: str, tmp_path: Path) -> Path:
    result = cli("completion", shell)
    assert result.returncode == 0 and result.stderr == ""
    path = tmp_path / f"completion.{shell}"
    path.write_text(result.stdout)
    return path


def _needs(shell: str) -> str:
    found = shutil.which(shell)
    if found is None:
        pytest.skip(f"{shell} is not installed")
    return found


# (words typed so far, the last one being completed) -> what the shell must offer
CASES = [
    (["ch"], {"check"}),
    (["check", "--for"], {"--format"}),
    (["check", "--format", ""], {"text", "json", "sarif"}),
    (["completion", ""], {"bash", "zsh", "fish"}),
    (["check", "--al"], {"--allow-empty"}),
    (["scan", "--report-api", ""], {"wgpolicyk8s.io/v1alpha2", "openreports.io/v1alpha1"}),
]


def _bash_offers(script: Path, words: list[str]) -> set[str]:
    line = " ".join(f"'{w}'" for w in [PROG, *words])
    program = (
        f"source {script}\nCOMP_WORDS=({line})\nCOMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))\n"
        '_apiserver_tls_guard\nprintf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    out = subprocess.run([_needs("bash"), "-c", program], capture_output=True, text=True, check=True, timeout=30)
    return {w for w in out.stdout.splitlines() if w}


@pytest.mark.parametrize(("words", "offered"), CASES)
def test_bash_completion(tmp_path: Path, words: list[str], offered: set[str]) -> None:
    assert _bash_offers(_script("bash", tmp_path), words) == offered


def test_bash_completes_every_subcommand(tmp_path: Path) -> None:
    assert _bash_offers(_script("bash", tmp_path), [""]) >= {*_subparsers(), "--version"}


def test_bash_leaves_free_values_to_file_completion(tmp_path: Path) -> None:
    # `complete -o default`: an empty answer makes bash complete file names, right for --config and paths.
    assert _bash_offers(_script("bash", tmp_path), ["check", "--config", ""]) == set()


@pytest.mark.parametrize(("words", "offered"), CASES)
def test_zsh_completion_through_bashcompinit(tmp_path: Path, words: list[str], offered: set[str]) -> None:
    zsh = _needs("zsh")
    script = _script("zsh", tmp_path)
    typed = " ".join(f"'{w}'" for w in [PROG, *words])
    # What zsh's _bash_complete sets before it calls the function (Completion/bashcompinit).
    program = (
        f"autoload -U compinit && compinit -u -D\nsource {script}\n"
        f'[[ "${{_comps[{PROG}]}}" == *_apiserver_tls_guard* ]] || exit 3\n'
        f"words=({typed})\nCURRENT=${{#words}}\n"
        'COMP_WORDS=("${words[@]}")\nCOMP_CWORD=$((CURRENT - 1))\n'
        'compgen -F _apiserver_tls_guard -- "${words[CURRENT]}"\n'
    )
    out = subprocess.run([zsh, "-f", "-c", program], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    # compgen under zsh leaves prefix filtering to compadd: filter as zsh would.
    got = {w for w in out.stdout.splitlines() if w.startswith(words[-1])}
    assert got == offered


@pytest.mark.parametrize(("words", "offered"), CASES)
def test_fish_completion(tmp_path: Path, words: list[str], offered: set[str]) -> None:
    fish = _needs("fish")
    script = _script("fish", tmp_path)
    typed = " ".join([PROG, *words])
    out = subprocess.run(
        [fish, "--no-config", "-c", f"source {script}; complete -C {json.dumps(typed)}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert {line.split("\t")[0] for line in out.stdout.splitlines()} == offered


# --- the JSON report -------------------------------------------------------------------------------------


def test_json_has_a_schema_version_and_the_line_of_each_finding(tmp_path: Path) -> None:
    manifest = tmp_path / "kas.yaml"
    manifest.write_text(pod_yaml(*SEEDS_MISSING, "--client-ca-file="))
    lines = manifest.read_text().splitlines()
    report = json.loads(cli("check", "--format", "json", str(manifest)).stdout)
    assert report["schemaVersion"] == 1
    by_control = {f["control"]: f for f in report["findings"]}
    assert lines[by_control["client-ca-file"]["line"] - 1].strip() == '- "--client-ca-file="'
    # A flag that is not written: the line of the command to add it to.
    assert lines[by_control["tls-cert-and-key"]["line"] - 1].strip() == "command:"
    for finding in report["findings"]:  # the fields that were there before stay
        assert {"source", "document", "kind", "name", "container", "control", "mode", "message"} <= set(finding)


def test_json_line_is_null_for_a_process(tmp_path: Path) -> None:
    _proc(tmp_path, 412, ["kube-apiserver", *SEEDS_MISSING])
    report = json.loads(cli("check", "--node", "--proc-root", str(tmp_path), "--format", "json").stdout)
    assert report["findings"] and all(f["line"] is None for f in report["findings"])


# --- exit codes ------------------------------------------------------------------------------------------


@pytest.fixture
def bad(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(pod_yaml(*SEEDS_MISSING))
    return path


def test_warn_mode_findings_exit_1_unless_told(bad: Path) -> None:
    assert cli("check", "--mode", "warn", str(bad)).returncode == 1  # as before
    assert cli("check", "--mode", "warn", "--warn-exit-code", "0", str(bad)).returncode == 0
    assert cli("check", "--mode", "warn", "--warn-exit-code", "3", str(bad)).returncode == 3


def test_warn_exit_code_does_not_soften_enforce_findings(bad: Path) -> None:
    assert cli("check", "--mode", "enforce", "--warn-exit-code", "0", str(bad)).returncode == 1


def test_warn_exit_code_is_an_exit_code(bad: Path) -> None:
    result = cli("check", "--warn-exit-code", "256", str(bad))
    assert result.returncode == 2 and "0 to 255" in result.stderr


def test_nothing_read_exits_2_unless_allowed(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text("replicas: 2\nimage: {tag: v1}\n")
    result = cli("check", str(values))
    assert result.returncode == 2 and "nothing judged: no Kubernetes object" in result.stderr
    assert cli("check", "--allow-empty", str(values)).returncode == 0


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "two", "7200"])
def test_drain_idle_refuses_what_is_not_a_duration(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["serve", "--drain-idle", value])
    assert exit_info.value.code == 2
    assert "--drain-idle" in capsys.readouterr().err


def test_drain_idle_takes_zero_and_fractions() -> None:
    assert build_parser().parse_args(["serve", "--drain-idle", "0"]).drain_idle == 0
    assert build_parser().parse_args(["serve", "--drain-idle", "0.5"]).drain_idle == 0.5

"""Input that must not hurt `check`: alias bombs, recursive aliases and oversized files are refused with exit 2
and a one-line reason, never expanded, never a traceback; a file past the size limit is refused before it is read
(issue 20, point 5), and a file that cannot be read is named while every other file is still judged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.admission.test_http import SEEDS_MISSING
from tests.conftest import cli
from tests.offline.test_check_cli import pod_yaml

MiB = 1024 * 1024


def _bomb(levels: int) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return "\n".join([*lines, "kind: Pod"]) + "\n"


def test_alias_bomb_is_refused_with_exit_2(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(_bomb(9))  # 10^9 nodes once expanded, from a few hundred bytes
    assert bomb.stat().st_size < 600
    result = cli("check", str(bomb))
    assert result.returncode == 2
    assert "aliases expand to more than 1,000,000 nodes" in result.stderr
    assert "Traceback" not in result.stderr


def test_modest_aliasing_is_read() -> None:
    text = _bomb(3) + "---\n" + "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"
    assert cli("check", "-", stdin=text).returncode == 0


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    result = cli("check", "-", stdin="a: &a [1, *a]\nkind: Pod\n")
    assert result.returncode == 2
    assert "an alias refers to a node that contains it" in result.stderr


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (16 * 1024 * 1024) + "\nkind: Pod\n")
    result = cli("check", str(big))
    assert result.returncode == 2
    assert "larger than 16 MiB" in result.stderr


def _max_rss_mib(*args: str, stdin_path: str | None = None) -> tuple[int, float, str]:
    """(exit code, peak RSS of `check` in MiB, stderr), measured in a fresh interpreter whose only child is the
    command, so RUSAGE_CHILDREN is that child's peak and no other test's."""
    exe = str(Path(sys.executable).with_name("apiserver-tls-guard"))
    probe = (
        "import resource, subprocess, sys, json\n"
        "stdin = open(sys.argv[2], 'rb') if sys.argv[2] else None\n"
        "r = subprocess.run(json.loads(sys.argv[1]), stdin=stdin, capture_output=True, text=True)\n"
        "print(json.dumps([r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.stderr]))\n"
    )
    command = json.dumps([exe, "check", *args])
    out = subprocess.run(
        [sys.executable, "-c", probe, command, stdin_path or ""],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    code, rss_kib, stderr = json.loads(out)
    return code, rss_kib / 1024, stderr


def test_a_600_mb_file_is_refused_from_its_size_without_reading_it(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("wb") as stream:
        stream.truncate(600 * 1000 * 1000)  # sparse: no disk, but read() would hand back 600 MB
    code, rss, err = _max_rss_mib(str(big))
    assert code == 2 and f"{big}: refused: larger than 16 MiB" in err
    # `check` itself is ~50 MiB; reading the file took 1.26 GB before.
    assert rss < 150, f"peak RSS {rss:.0f} MiB"


def test_endless_stdin_is_read_only_to_the_limit() -> None:
    code, rss, err = _max_rss_mib("-", stdin_path="/dev/zero")
    assert code == 2 and "<stdin>: refused: larger than 16 MiB" in err
    assert rss < 150, f"peak RSS {rss:.0f} MiB"


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("deep.json", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("deep-object.json", '{"a":' * 100_000 + "1" + "}" * 100_000, "nested too deeply"),
        ("deep.yaml", "kind: Pod\nspec: " + "[" * 100_000 + "]" * 100_000 + "\n", "nesting depth"),
        ("latin1.yaml", b"kind: Pod\nmetadata: {name: caf\xe9}\n", "not UTF-8"),
    ],
)
def test_an_unreadable_file_is_named_and_every_other_file_still_judged(
    tmp_path: Path, name: str, content: str | bytes, says: str
) -> None:
    for good in ("a.yaml", "z.yaml"):
        (tmp_path / good).write_text(pod_yaml(*SEEDS_MISSING, name=good.split(".")[0]))
    bad = tmp_path / name
    if isinstance(content, bytes):
        bad.write_bytes(content)
    else:
        bad.write_text(content)
    result = cli("check", "--format", "json", str(tmp_path))
    assert result.returncode == 2
    assert f"{bad}:" in result.stderr and says in result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    report = json.loads(result.stdout)
    assert {f["name"] for f in report["findings"]} == {"a", "z"}  # the files before and after it

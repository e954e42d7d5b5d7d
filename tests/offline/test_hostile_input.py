"""Input that must not hurt `check`: alias bombs, recursive aliases and oversized files are refused with exit 2
and a one-line reason, never expanded, never a traceback."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import cli


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

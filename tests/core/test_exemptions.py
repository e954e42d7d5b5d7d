"""Name-glob exemptions that would match every pod are refused (issue 20 point 4: the old guard only caught
wildcards-only patterns, and `[a-z]*` walked past it). Checked against generated object names, not against the
rule's own arithmetic: what is refused matches (nearly) every valid name, and what is kept matches few."""

from __future__ import annotations

import fnmatch
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhook.core.policy import ConfigError, glob_parts, name_pattern_problem, parse_policy

# apimachinery validation.IsDNS1123Subdomain: what a pod or Deployment name can be.
_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
_EDGE = "abcdefghijklmnopqrstuvwxyz0123456789"
_INNER = _EDGE + "-."


def _names(count: int, seed: int = 20) -> list[str]:
    """Every valid name of 1 and 2 characters, then random valid names of 3 to 63."""
    names = [*_EDGE, *(a + b for a in _EDGE for b in _EDGE)]
    rng = random.Random(seed)
    while len(names) < count:
        length = rng.randint(3, 63)
        name = rng.choice(_EDGE) + "".join(rng.choice(_INNER) for _ in range(length - 2)) + rng.choice(_EDGE)
        if DNS1123_SUBDOMAIN.match(name):
            names.append(name)
    return names


NAMES = _names(5000)


def _share(pattern: str) -> float:
    return sum(fnmatch.fnmatchcase(n, pattern) for n in NAMES) / len(NAMES)


@pytest.mark.parametrize(
    "pattern",
    ["*", "**", "?*", "*?", "*?*", "[a-z]*", "[a-z0-9]*", "[!x]*", "[!-]*", "*[a-z0-9]*", "?[!.]*", "[!]]*", "[a-z]?*"],
)
def test_patterns_that_match_nearly_every_name_are_refused(pattern: str) -> None:
    assert _share(pattern) > 0.5  # the fixture: each of these really does exempt most names
    assert name_pattern_problem(pattern) is not None
    with pytest.raises(ConfigError, match=r"exemptions\.names\[0\]\.pattern: .*would exempt every pod"):
        parse_policy({"exemptions": {"names": [{"pattern": pattern, "namespaces": ["lab"]}]}})


@pytest.mark.parametrize("pattern", ["kube-apiserver-lab-*", "*-lab", "kas-?", "lab*", "kube-apiserver-[0-9]*"])
def test_patterns_that_name_something_are_kept(pattern: str) -> None:
    assert _share(pattern) < 0.01
    assert name_pattern_problem(pattern) is None


@pytest.mark.parametrize("pattern", ["Kube-apiserver-*", "kube_apiserver*", "[", "[A-Z]*"])
def test_patterns_no_valid_name_can_match_are_refused(pattern: str) -> None:
    assert _share(pattern) == 0
    assert "can never match" in (name_pattern_problem(pattern) or "")


def test_the_pattern_is_cut_as_fnmatch_cuts_it() -> None:
    """CPython Lib/fnmatch.py translate: an unclosed `[` is a literal; `]` first in a class belongs to it."""
    assert glob_parts("a[!]]b*[") == ["a", "[!]]", "b", "*", "["]
    assert glob_parts("[]-]x") == ["[]-]", "x"]


_PARTS = st.sampled_from(["*", "?", "[a-z]", "[!x]", "[a-z0-9]", "[!-]", "[0-9]", "[ab]", "a", "k", "-", "1", "."])


@settings(max_examples=300, deadline=None)
@given(st.lists(_PARTS, min_size=1, max_size=6).map("".join))
def test_a_pattern_matching_most_generated_names_is_never_accepted(pattern: str) -> None:
    if all(fnmatch.fnmatchcase(n, pattern) for n in NAMES[:1332]):  # every name of one and two characters
        assert name_pattern_problem(pattern) is not None
    if _share(pattern) > 0.5:
        assert name_pattern_problem(pattern) is not None

"""The correctness half of the peers benchmark (benchmarks/PEERS.md) on the real kube-apiserver: Kyverno (both
policy kinds) and Gatekeeper read the command line with the same regular expressions as the hand-written
ValidatingAdmissionPolicy, so on every corpus manifest and every false-pass fixture each must give the verdict the
VAP gives; a difference is the engine's (its scoping, defaults or message), not the policy's. One difference is
known and allowed: Kyverno registers one webhook per ValidatingPolicy, kube-apiserver calls them in parallel and
reports only the first denial (k8s.io/apiserver pkg/admission/plugin/webhook/validating/dispatcher.go), so with both
controls failing its denial names one of them, whichever answered first. For it the test asks for the same pods
refused and no control named that the VAP does not name.

Skipped unless `make peers` has built them (into PEERS_BIN, default KUBE_BIN): `make test` never builds the peers.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.peers import corpus
from benchmarks.peers.engines import PEERS_BIN as BUILT
from benchmarks.peers.engines import Engine, Gatekeeper, HandwrittenVap, Kyverno
from tests.conftest import requires_shared
from tests.e2e.controlplane import ControlPlane

# name: (policy file, binary, whether its denial names every failing control)
PEERS = {
    "kyverno": ("kyverno-validatingpolicy.yaml", "kyverno", False),
    "kyverno-clusterpolicy": ("kyverno-clusterpolicy.yaml", "kyverno", True),
    "gatekeeper": ("gatekeeper.yaml", "gatekeeper", True),
}
Verdicts = dict[tuple[str, str], tuple[str, bool]]  # (file, control) -> (verdict, pod refused)
pytestmark = [
    requires_shared(),
    pytest.mark.skipif(
        not any((BUILT / binary).is_file() for _, binary, _ in PEERS.values()),
        reason=f"no peer is built in {BUILT} (`make peers`)",
    ),
]


def _verdicts(answers: list[corpus.Answer]) -> Verdicts:
    return {(a.name, a.control): (a.got, a.denied) for a in answers}


def _judge(engine: Engine, plane: ControlPlane) -> Verdicts:
    engine.start()
    try:
        engine.enable()
        return _verdicts(corpus.run(plane, corpus.corpus_subjects() + corpus.fixture_subjects()))
    finally:
        engine.stop()
        if isinstance(engine, Kyverno):
            engine.stop_shared()


@pytest.fixture(scope="module")
def reference(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Verdicts]:
    yield _judge(HandwrittenVap("vap-handwritten", control_plane, tmp_path_factory.mktemp("vap")), control_plane)


@pytest.mark.parametrize("name", sorted(PEERS))
def test_a_peer_gives_the_verdicts_of_the_same_policy_as_a_vap(
    name: str, reference: Verdicts, control_plane: ControlPlane, tmp_path: Path
) -> None:
    policy_file, binary, names_every_control = PEERS[name]
    if not (BUILT / binary).is_file():
        pytest.skip(f"{binary} is not built in {BUILT} (`make peers`)")
    engine: Engine
    if name == "gatekeeper":
        engine = Gatekeeper(name, control_plane, tmp_path)
    else:
        engine = Kyverno(name, control_plane, tmp_path, policy_file=policy_file)
    got = _judge(engine, control_plane)
    assert set(got) == set(reference)
    if names_every_control:
        differences = {k: (got[k], reference[k]) for k in got if got[k] != reference[k]}
    else:
        differences = {
            k: (got[k], reference[k])
            for k in got
            if got[k][1] != reference[k][1] or (got[k][0] == "fail" and reference[k][0] != "fail")
        }
    assert not differences, differences

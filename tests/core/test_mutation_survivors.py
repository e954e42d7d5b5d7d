"""Tests written for mutants that survived `make mutation` (tests/mutation/mutate.py): each fails on the mutant
named in its docstring and passes on the real code."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from tests.admission.test_http import COMPLIANT, NO_TLS, apiserver_pod
from tests.apiserver_client import ApiserverClient, admission_review
from webhook.cmdline.expand import expand
from webhook.cmdline.locate import apiserver_containers, find_apiserver_args
from webhook.core.catalog import _minor, load_catalog
from webhook.core.policy import LabelSelector
from webhook.pki.authority import CA, ensure_certs, write_file


def test_match_labels_match_equal_values_only() -> None:
    """policy.py: `labels.get(k) != v` turned into `==` inverted every matchLabels exemption."""
    selector = LabelSelector({"env": "lab"})
    assert selector.matches({"env": "lab", "x": "y"}) is True
    assert selector.matches({"env": "prod"}) is False
    assert selector.matches({}) is False


def test_a_controls_flags_are_its_flags_list_or_its_one_flag() -> None:
    """catalog.py: `check.get('flags') or [check['flag']]` turned into `and`."""
    catalog = load_catalog()
    assert catalog.control("tls-cert-and-key").flags == ("tls-cert-file", "tls-private-key-file")
    assert catalog.control("anonymous-auth-disabled").flags == ("anonymous-auth",)


def test_minor_reads_major_and_minor_of_longer_versions() -> None:
    """catalog.py: `split('.')[:2]` turned into `[:3]` breaks on a patch version."""
    assert _minor("1.28.3") == (1, 28)
    assert _minor("1.15") == (1, 15)


def test_a_trailing_dollar_is_a_literal() -> None:
    """expand.py: `i + 1 >= n` turned into `>` reads past the end of '...$'."""
    assert expand("--token=abc$", {}) == "--token=abc$"
    assert expand("$", {}) == "$"


def test_the_hyperkube_image_entrypoint_takes_the_subcommand_from_args() -> None:
    """locate.py: `args[0] in HYPERKUBE_SUBCOMMANDS` turned into `not in`."""
    spec = {
        "containers": [
            {"name": "api", "image": "quay.io/coreos/hyperkube:v1.8.4_coreos.0", "args": ["apiserver", "--v=2"]},
            {"name": "kubelet", "image": "quay.io/coreos/hyperkube:v1.8.4_coreos.0", "args": ["kubelet", "--v=2"]},
        ]
    }
    [found] = apiserver_containers(spec)
    assert found.name == "api" and found.args == ("--v=2",) and found.via_image_entrypoint


def test_an_escaped_quote_inside_double_quotes_stays_in_the_word() -> None:
    """shell.py: skipping `\\\\` plus 2 characters turned into 3 loses the character after the escape."""
    args = find_apiserver_args(["/bin/sh", "-c", 'exec kube-apiserver "--audit-log-path=/a\\"b" --client-ca-file=/ca'])
    assert args == ['--audit-log-path=/a"b', "--client-ca-file=/ca"]
    # The escape right before the closing quote: skipping one character too many would swallow the quote.
    args = find_apiserver_args(["/bin/sh", "-c", 'exec kube-apiserver "--audit-log-path=/a\\"" --client-ca-file=/ca'])
    assert args == ['--audit-log-path=/a"', "--client-ca-file=/ca"]


def test_a_here_document_is_skipped_up_to_its_delimiter_line_only() -> None:
    """shell.py: the delimiter comparison turned around stops the skip after the first body line."""
    script = (
        "cat <<EOF > /m\necho one\nkube-apiserver --anonymous-auth=true\nEOF\n"
        "exec kube-apiserver --anonymous-auth=false"
    )
    assert find_apiserver_args(["/bin/sh", "-c", script]) == ["--anonymous-auth=false"]
    from webhook.cmdline.locate import all_apiserver_args

    assert all_apiserver_args(["/bin/sh", "-c", script]) == [["--anonymous-auth=false"]]


def test_an_object_without_kind_is_judged_by_the_requests_kind(enforce_client: ApiserverClient) -> None:
    """decide.py: `if not obj.get('kind')` turned into `if obj.get('kind')` let kindless objects through."""
    pod = apiserver_pod(*NO_TLS)
    del pod["kind"]
    answer = enforce_client.review(admission_review(pod))
    assert answer["allowed"] is False


def test_one_failing_control_is_counted_in_the_singular(enforce_client: ApiserverClient) -> None:
    """decide.py: the plural test `!= 1` turned into `!= 2`."""
    answer = enforce_client.review(admission_review(apiserver_pod(*NO_TLS)))
    assert "fails 1 kube-apiserver TLS control (CIS" in answer["status"]["message"]
    two = [f for f in NO_TLS if not f.startswith("--client-ca-file")]
    assert (
        "fails 2 kube-apiserver TLS controls (CIS"
        in enforce_client.review(admission_review(apiserver_pod(*two)))["status"]["message"]
    )
    assert COMPLIANT


def test_the_ca_is_valid_ten_years() -> None:
    """authority.py: CA_DAYS 3650 turned into 3651."""
    now = dt.datetime(2026, 11, 25, tzinfo=dt.UTC)
    ca = CA.create(now=now)
    assert ca.cert.not_valid_after_utc - now == dt.timedelta(days=3650)


def test_a_serving_certificate_capped_at_its_cas_expiry_is_kept(tmp_path: Path) -> None:
    """authority.py: `not_valid_after > ca's` turned into `>=` re-issued a capped certificate on every start."""
    ca = CA.create(days=100)  # less left than a serving certificate's 365 days: the leaf is capped at the CA's end
    write_file(tmp_path / "ca.crt", ca.cert_pem, private=False)
    write_file(tmp_path / "ca.key", ca.key_pem, private=True)
    assert ensure_certs(tmp_path).created_serving
    assert not ensure_certs(tmp_path).created_serving

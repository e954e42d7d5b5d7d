"""The command-line reader, one test per form the issue lists. Expected values are written by hand."""

from __future__ import annotations

from typing import Any

import pytest

from webhook.cmdline.expand import expand, unknown, visible
from webhook.cmdline.flags import parse_flags
from webhook.cmdline.locate import apiserver_containers, find_apiserver_args
from webhook.cmdline.shell import simple_commands


def pod(*containers: dict[str, Any]) -> dict[str, Any]:
    return {"containers": list(containers)}


def flags_of(container: dict[str, Any]) -> dict[str, str | None]:
    found = apiserver_containers(pod(container))
    assert len(found) == 1, found
    f = found[0].flags
    return {name: f.value(name) for name in f.names()}


# --- where the binary is -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["kube-apiserver"],
        ["/usr/local/bin/kube-apiserver"],
        ["/opt/k8s/bin//kube-apiserver"],
    ],
)
def test_binary_in_command0_any_path(command: list[str]) -> None:
    assert flags_of({"name": "x", "command": [*command, "--client-ca-file=/ca"]}) == {"client-ca-file": "/ca"}


def test_command_plus_args_are_joined() -> None:
    c = {"name": "api", "command": ["kube-apiserver"], "args": ["--client-ca-file=/ca", "--v=2"]}
    assert flags_of(c) == {"client-ca-file": "/ca", "v": "2"}


@pytest.mark.parametrize("sub", ["apiserver", "kube-apiserver"])
def test_hyperkube_subcommand_in_command(sub: str) -> None:
    c = {"name": "h", "command": ["/hyperkube", sub, "--tls-cert-file=/c"]}
    assert flags_of(c) == {"tls-cert-file": "/c"}


def test_hyperkube_subcommand_as_args0() -> None:
    c = {"name": "h", "command": ["hyperkube"], "args": ["kube-apiserver", "--tls-cert-file=/c"]}
    assert flags_of(c) == {"tls-cert-file": "/c"}


def test_hyperkube_other_subcommand_is_not_an_apiserver() -> None:
    c = {"name": "cm", "command": ["/hyperkube", "controller-manager", "--tls-cert-file=/c"]}
    assert apiserver_containers(pod(c)) == []


@pytest.mark.parametrize(
    "command",
    [
        [
            "/go-runner",
            "--log-file=/var/log/kube-apiserver.log",
            "--also-stdout=false",
            "/usr/local/bin/kube-apiserver",
        ],
        ["flock", "/var/lock/api-server.lock", "/hyperkube", "apiserver"],
        ["watch-termination", "--termination-touch-file=/t", "--", "hyperkube", "kube-apiserver"],
        ["/usr/bin/timeout", "105", "/bin/bash", "-ec", 'exec kube-apiserver "$@"'],
    ],
)
def test_wrappers_are_peeled_off(command: list[str]) -> None:
    args = ["--client-ca-file=/ca"] if "exec" not in command[-1] else []
    c = {"name": "w", "command": command, "args": args}
    if "exec" in command[-1]:
        c["command"] = [*command[:-1], command[-1].replace('"$@"', "--client-ca-file=/ca")]
    assert flags_of(c) == {"client-ca-file": "/ca"}


def test_wrapper_options_are_not_apiserver_flags() -> None:
    c = {"name": "w", "command": ["/go-runner", "--log-file=/x.log", "kube-apiserver", "--v=2"]}
    assert "log-file" not in flags_of(c)


# --- shell wrappers ------------------------------------------------------------------------------------


def test_sh_c_with_exec_semicolon_redirection_and_background() -> None:
    script = (
        "mkfifo /tmp/pipe; (tee -a /var/log/kube-apiserver.log < /tmp/pipe & ) ; exec "
        "/usr/local/bin/kube-apiserver --client-ca-file=/srv/ca.crt "
        "--etcd-servers-overrides=/events#http://127.0.0.1:4002 --tls-cert-file=/srv/s.crt > /tmp/pipe 2>&1"
    )
    got = flags_of({"name": "s", "command": ["/bin/sh", "-c", script]})
    assert got == {
        "client-ca-file": "/srv/ca.crt",
        "etcd-servers-overrides": "/events#http://127.0.0.1:4002",
        "tls-cert-file": "/srv/s.crt",
    }


def test_bash_ec_script_in_args_with_and_and_comments() -> None:
    script = """
    set -o pipefail   # comment with --tls-cert-file=/nope
    # --client-ca-file=/commented-out
    test -f /etc/ca && exec hyperkube kube-apiserver --client-ca-file='/etc/k ca.crt' --v=2 &
    """
    got = flags_of({"name": "b", "command": ["/bin/bash", "-ec"], "args": [script]})
    assert got == {"client-ca-file": "/etc/k ca.crt", "v": "2"}


def test_shell_output_redirect_forms() -> None:
    script = "/usr/local/bin/kube-apiserver --client-ca-file=/ca  --v=2 1>>/var/log/kube-apiserver.log 2>&1"
    assert flags_of({"name": "s", "command": ["sh", "-c", script]}) == {"client-ca-file": "/ca", "v": "2"}


def test_shell_without_apiserver_is_not_an_apiserver() -> None:
    c = {"name": "s", "command": ["sh", "-c", "echo kube-apiserver --client-ca-file=/ca; sleep 10"]}
    assert apiserver_containers(pod(c)) == []


def test_shell_script_file_is_not_guessed() -> None:
    c = {"name": "s", "command": ["/bin/sh", "/start-apiserver.sh", "--client-ca-file=/ca"]}
    assert apiserver_containers(pod(c)) == []


def test_simple_commands_keeps_substitutions_inside_words() -> None:
    script = "while [ -n \"$(ss -Htan '( sport = 6443 )')\" ]; do sleep 1; done; exec kube-apiserver --a=${HOST_IP}"
    assert simple_commands(script)[-1] == ["kube-apiserver", "--a=${HOST_IP}"]


# --- flag syntax (pflag) -------------------------------------------------------------------------------


def test_equals_and_space_forms() -> None:
    f = parse_flags(["--tls-cert-file", "/c", "--tls-private-key-file=/k"])
    assert (f.value("tls-cert-file"), f.value("tls-private-key-file")) == ("/c", "/k")


def test_space_form_only_for_flags_that_take_a_value() -> None:
    f = parse_flags(["--profiling", "false", "--anonymous-auth", "--client-ca-file", "/ca"])
    assert f.value("profiling") == "true"  # pflag: bare bool is true; "false" is a stray positional
    assert f.value("anonymous-auth") == "true"
    assert f.value("client-ca-file") == "/ca"
    assert f.positional == ("false",)


def test_single_dash_is_a_cluster_of_shorthands_as_in_pflag() -> None:
    """pflag flag.go parseSingleShortArg: `-client-ca-file=/ca` is the shorthand -c (unknown to kube-apiserver,
    which exits "unknown shorthand flag: 'c'"), never --client-ca-file."""
    f = parse_flags(["-v=2", "-client-ca-file=/ca", "-tls-cert-file", "/c"])
    assert (f.value("v"), f.value("client-ca-file"), f.value("tls-cert-file")) == ("2", None, None)
    assert parse_flags(["-v", "4"]).value("v") == "4"
    assert parse_flags(["-v3"]).value("v") == "3"


def test_last_occurrence_wins_for_single_value_flags() -> None:
    f = parse_flags(["--anonymous-auth=false", "--anonymous-auth=true", "--client-ca-file=/a", "--client-ca-file="])
    assert f.value("anonymous-auth") == "true"
    assert f.value("client-ca-file") == ""
    assert not f.is_set("client-ca-file")


def test_list_flags_add_up() -> None:
    f = parse_flags(
        [
            "--tls-cipher-suites=A,B",
            "--tls-cipher-suites",
            "C",
            "--authorization-mode=Node",
            "--authorization-mode=RBAC",
        ]
    )
    assert f.items("tls-cipher-suites") == ["A", "B", "C"]
    assert f.items("authorization-mode") == ["Node", "RBAC"]


def test_empty_value_counts_as_not_set() -> None:
    f = parse_flags(["--client-ca-file=", "--tls-cert-file=  "])
    assert not f.is_set("client-ca-file")
    assert not f.is_set("tls-cert-file")
    assert f.value("client-ca-file") == ""


def test_bare_flag_at_end_without_value() -> None:
    f = parse_flags(["--client-ca-file"])
    assert f.value("client-ca-file") == ""
    assert not f.is_set("client-ca-file")


def test_double_dash_ends_flags() -> None:
    f = parse_flags(["--v=2", "--", "--client-ca-file=/ca"])
    assert f.value("client-ca-file") is None


def test_underscores_are_word_separators() -> None:
    assert parse_flags(["--client_ca_file=/ca"]).value("client-ca-file") == "/ca"


def test_requestheader_client_ca_is_not_client_ca() -> None:
    f = parse_flags(["--requestheader-client-ca-file=/front-proxy-ca.crt"])
    assert f.value("client-ca-file") is None


# --- $(VAR) expansion (kubelet) ------------------------------------------------------------------------


def test_expand_from_env_as_the_kubelet_does() -> None:
    env = {"PKI": "/etc/kubernetes/pki", "EMPTY": "", "FROM_FIELD": None}
    assert expand("--client-ca-file=$(PKI)/ca.crt", env) == "--client-ca-file=/etc/kubernetes/pki/ca.crt"
    assert expand("$(EMPTY)", env) == ""
    # Unknown before the pod runs: kept, and marked so the flag reader knows it cannot see the value.
    assert expand("$(UNDEFINED)", env) == unknown("$(UNDEFINED)")
    assert expand("$(FROM_FIELD)", env) == unknown("$(FROM_FIELD)")
    assert visible(expand("--a=$(FROM_FIELD)", env)) == "--a=$(FROM_FIELD)"
    assert expand("$$(PKI)", env) == "$(PKI)"
    assert expand("${PKI}", env) == "${PKI}"
    assert expand("cost$5 $(PKI", env) == "cost$5 $(PKI"


def test_env_references_earlier_env_and_empty_var_unsets_flag() -> None:
    c = {
        "name": "api",
        "command": [
            "kube-apiserver",
            "--client-ca-file=$(CA)",
            "--tls-cert-file=$(NONE)",
            "--advertise-address=$(IP)",
        ],
        "env": [
            {"name": "PKI", "value": "/pki"},
            {"name": "CA", "value": "$(PKI)/ca.crt"},
            {"name": "NONE", "value": ""},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        ],
    }
    got = flags_of(c)
    assert got["client-ca-file"] == "/pki/ca.crt"
    assert got["tls-cert-file"] == ""
    assert visible(got["advertise-address"] or "") == "$(IP)"


# --- which containers count ----------------------------------------------------------------------------


def test_flags_of_other_containers_never_count() -> None:
    spec = pod(
        {"name": "sidecar", "command": ["/proxy-server", "--client-ca-file=/ca", "--tls-cert-file=/c"]},
        {"name": "kube-apiserver", "command": ["kube-apiserver", "--v=2"]},
    )
    [found] = apiserver_containers(spec)
    assert found.name == "kube-apiserver"
    assert found.flags.value("client-ca-file") is None


def test_apiserver_as_second_container_with_unrelated_name() -> None:
    spec = pod({"name": "a", "command": ["/checkpoint.sh"]}, {"name": "main", "command": ["/hyperkube", "apiserver"]})
    assert [c.name for c in apiserver_containers(spec)] == ["main"]


def test_plain_init_containers_and_ephemeral_containers_are_judged() -> None:
    """Issue 19.1 (this test said the opposite before): a plain init container running kube-apiserver never
    exits, so the kubelet never starts the next one and it serves for the pod's life (kubelet
    kuberuntime_container.go computeInitContainerActions); ephemeral containers run beside the others."""
    spec = {
        "initContainers": [{"name": "i", "command": ["kube-apiserver", "--v=1"]}],
        "containers": [{"name": "c", "command": ["sleep", "1"]}],
        "ephemeralContainers": [{"name": "e", "command": ["kube-apiserver", "--v=2"]}],
    }
    assert [(c.name, c.args) for c in apiserver_containers(spec)] == [("i", ("--v=1",)), ("e", ("--v=2",))]


def test_image_entrypoint_when_command_is_empty() -> None:
    c = {"name": "api", "image": "registry.k8s.io/kube-apiserver:v1.30.2", "args": ["--client-ca-file=/ca"]}
    [found] = apiserver_containers(pod(c))
    assert found.via_image_entrypoint and found.flags.value("client-ca-file") == "/ca"


@pytest.mark.parametrize(
    "container",
    [
        {"name": "x", "command": "kube-apiserver --client-ca-file=/ca"},  # not a list
        {"name": "x", "command": [1, None, {"a": 1}]},
        {"name": "x", "command": ["kube-apiserver", "\x00", "--\u202e=1", "--=", "-", "---x"]},
        {"name": "x", "command": ["sh", "-c", "'unterminated \"quote $(x ${y `z"]},
        {"name": "x", "command": ["sh", "-c"]},
        {"name": "x", "env": "nope", "command": ["kube-apiserver", "$(A"]},
    ],
)
def test_odd_command_lines_never_crash(container: dict[str, Any]) -> None:
    apiserver_containers(pod(container))


def test_find_apiserver_args_ignores_option_values_that_look_like_paths() -> None:
    assert find_apiserver_args(["/proxy", "--bin=/usr/bin/kube-apiserver", "--x"]) is None


def test_flag_value_is_the_next_item_even_when_it_starts_with_a_dash() -> None:
    """pflag flag.go parseLongArg ('--flag arg'): the next item is the value, whatever it looks like."""
    f = parse_flags(["--audit-log-path", "--client-ca-file=/x", "--anonymous-auth", "--profiling"])
    assert f.value("audit-log-path") == "--client-ca-file=/x"
    assert f.value("client-ca-file") is None
    assert f.value("anonymous-auth") == "true" and f.value("profiling") == "true"  # booleans never take one


def test_an_unreadable_item_may_override_what_comes_before_it() -> None:
    env = {"EXTRA": None}
    argv = [expand(a, env) for a in ["--client-ca-file=/ca", "$(EXTRA)", "--tls-cert-file=/c"]]
    f = parse_flags(argv)
    assert f.unseen(["client-ca-file"]) == "$(EXTRA) (content unknown before the pod runs) may set --client-ca-file"
    assert f.unseen(["tls-cert-file"]) is None  # given after it: still decides
    assert f.unseen(["tls-cipher-suites"]) is not None  # a list flag: it may add to it wherever it is
    assert f.unseen(["anonymous-auth"]) is not None  # not given at all: it may set it


def test_a_value_from_an_unreadable_variable_is_unseen() -> None:
    f = parse_flags([expand("--authorization-mode=$(MODE)", {"MODE": None})])
    assert f.unseen(["authorization-mode"]) == (
        "--authorization-mode takes its value from $(MODE), which cannot be read before the pod runs"
    )


def test_a_reference_no_env_mapping_can_hold_stays_as_written_for_the_shell() -> None:
    """third_party/forked/golang/expansion: a name not in the mapping is left as written. A name with `=` can be in
    no mapping (IsEnvVarName, relaxed or not), so a script's `$(ss ... = 6443 )` reaches the shell unchanged and is
    a command substitution there; an identifier may come from envFrom or a service variable: unknown."""
    script = "while [ -n \"$(ss -Htan '( sport = 6443 )')\" ]; do sleep 1; done"
    assert expand(script, {}) == script
    assert expand("$(kube_apiserver_arg)", {}) == unknown("$(kube_apiserver_arg)")

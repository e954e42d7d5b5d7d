"""The bootstrap guardrail: the webhook's checks on manifest files and on running processes, before admission."""

from __future__ import annotations

import fnmatch
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from webhook.bootstrap import k3s, kubeadm
from webhook.bootstrap.generated import ConfigError, Generated
from webhook.core.engine import Verdict, evaluate
from webhook.core.policy import Policy
from webhook.core.workloads import Subject
from webhook.offline.documents import MAX_TEXT_BYTES, Document, DocumentError, load_documents
from webhook.offline.report import Judged

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


STDIN = "<stdin>"


@dataclass
class Inputs:
    """The manifest files to judge (read one at a time as they are judged), and the inputs that could not be used
    (with the reason)."""

    sources: list[str] = field(default_factory=list)  # file names, STDIN for `-`
    errors: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # notes: inputs left out on purpose, and why
    installers: dict[str, str] = field(default_factory=dict)  # source -> k3s | rke2, for config files named so


def read_manifest(source: str) -> str:
    """The text of a manifest file (or stdin), refused past MAX_TEXT_BYTES before it is read: a regular file by
    its size, anything else (a pipe, stdin) by reading one byte more than the limit, never the whole of it.
    Raises DocumentError (too large, not UTF-8) or OSError."""
    limit = MAX_TEXT_BYTES
    refused = f"{source}: refused: larger than {limit // (1024 * 1024)} MiB"
    if source == STDIN:
        data = sys.stdin.buffer.read(limit + 1)
    else:
        with open(source, "rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            if size > limit:
                raise DocumentError(refused)
            # read(n) allocates n bytes first: ask for the size stat() gave, and only then for the rest up to the
            # limit (a file that grew, or one whose size stat() does not know, as in /proc).
            data = stream.read(size + 1)
            if len(data) > size:
                data += stream.read(limit + 1 - len(data))
    if len(data) > limit:
        raise DocumentError(refused)
    try:
        # Bytes as written, line ends included: what kubectl and the kubelet read.
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise DocumentError(f"{source}: not UTF-8 text") from None


_TEMPLATE_ACTION = re.compile(r"\{\{-?\s.*?\}\}|\{\{[^}]*\}\}", re.S)


def _in_chart_templates(path: Path) -> bool:
    """A file under a Helm chart's templates/: Go templates, YAML only once `helm template` renders them."""
    return any(p.name == "templates" and (p.parent / "Chart.yaml").is_file() for p in path.resolve().parents)


def _excluded(path: Path, root: Path, patterns: Sequence[str]) -> bool:
    names = {path.as_posix()}
    if root.is_dir():
        names.add(path.relative_to(root).as_posix())
    return any(fnmatch.fnmatch(name, pattern) for name in names for pattern in patterns)


def _files_below(directory: Path) -> Iterator[Path]:
    for path in sorted(directory.rglob("*")):
        if (
            path.is_file()
            and path.suffix.lower() in MANIFEST_SUFFIXES
            and not any(part.startswith(".") for part in path.relative_to(directory).parts)
        ):
            yield path


def read_inputs(
    paths: Sequence[str], exclude: Sequence[str] = (), installers: Mapping[str, Sequence[str]] | None = None
) -> Inputs:
    """The files named (directories searched), minus those matching an `exclude` glob (on the path
    as given or relative to the directory searched) and Helm chart templates, which are noted as skipped.
    `installers` names k3s/RKE2 configuration files (`{"k3s": [path, ...]}`), read as such wherever they are."""
    inputs = Inputs()
    for installer, named in (installers or {}).items():
        inputs.installers.update((str(Path(n)), installer) for n in named)
        paths = [*paths, *named]
    for name in paths:
        if name == "-":
            inputs.sources.append(STDIN)
            continue
        path = Path(name)
        files = list(_files_below(path)) if path.is_dir() else [path]
        if path.is_dir() and not files:
            inputs.errors.append(f"{name}: no .yaml, .yml or .json files in this directory")
        for file in files:
            if exclude and _excluded(file, path, exclude):
                continue
            if _in_chart_templates(file):
                inputs.skipped.append(f"{file}: skipped, a Helm chart template (check `helm template` output)")
                continue
            inputs.sources.append(str(file))
    return inputs


def _line_of(lines: list[str], first: int, last: int, pattern: re.Pattern[str]) -> int | None:
    for number in range(first, min(last, len(lines)) + 1):
        if pattern.search(lines[number - 1]):
            return number
    return None


_APISERVER = re.compile("apiserver")  # kube-apiserver, hyperkube apiserver
# A flag that is missing is added to the command line: point at it, not at the object's name.
_COMMAND = re.compile(r"^\s*-?\s*(command|args)\s*:.*apiserver|^\s*-?\s*(command|args)\s*:\s*$")


def finding_line(lines: list[str], first: int, last: int, flags: Sequence[str]) -> int:
    """The line to point a code-scanning annotation at: the flag if written, else the apiserver's command.

    A flag is matched as a whole word: `--requestheader-client-ca-file` is not `--client-ca-file`.
    """
    flag = re.compile(r"(?<![\w-])--?(?:" + "|".join(re.escape(f) for f in flags) + r")(?![\w-])")
    return (
        _line_of(lines, first, last, flag)
        or _line_of(lines, first, last, _COMMAND)
        or _line_of(lines, first, last, _APISERVER)
        or first
    )


def _judge_manifest(doc: Document, lines: list[str], source: str, policy: Policy) -> Judged:
    verdict = evaluate(doc.obj, policy)
    last = doc.end_line or len(lines)
    located = {
        (f.container, f.key): finding_line(lines, doc.line, last, policy.catalog.control(f.key).flags)
        for f in verdict.findings
    }
    if not verdict.subject.mirror:
        # The file in the repository is what must change, not the node path the object would end up at.
        verdict = replace(
            verdict,
            findings=tuple(
                f._replace(where=f"edit {source} at line {located[(f.container, f.key)]}") for f in verdict.findings
            ),
        )
    return Judged(source, doc.index, verdict, doc.line, located)


def _config_line(lines: list[str], first: int, last: int, flags: Sequence[str], section: str) -> tuple[int, bool]:
    """The line that sets one of `flags` in a bootstrap configuration (True), else the line of the section to add
    it to, else the document's first line (False). Names match as whole words, outside comments."""
    written = re.compile(r"(?<![\w-])(?:--)?(?:" + "|".join(re.escape(f) for f in flags) + r")(?![\w-])")
    for number in range(first, min(last, len(lines)) + 1):
        if written.search(lines[number - 1].split("#", 1)[0]):
            return number, True
    for key in reversed(re.findall(r"[A-Za-z][\w-]*\+?", section)):
        anchor = re.compile(r"^\s*-?\s*" + re.escape(key.rstrip("+")) + r"\+?\s*:")
        found = _line_of(lines, first, last, anchor)
        if found:
            return found, False
    return first, False


def _judge_generated(generated: Generated, doc: Document, lines: list[str], source: str, policy: Policy) -> Judged:
    """A bootstrap configuration's verdict: the engine's on the pod the installer would write, pointed back at the
    configuration's lines."""
    verdict = evaluate(generated.pod(), policy)
    last = doc.end_line or len(lines)
    located: dict[tuple[str, str], int] = {}
    findings = []
    for f in verdict.findings:
        flags = policy.catalog.control(f.key).flags
        line, written = _config_line(lines, doc.line, last, flags, generated.section)
        located[(f.container, f.key)] = line
        action = "change it in" if written else f"add {', '.join('--' + flag for flag in flags)} to"
        detail = f"{f.detail} ({generated.assumption})" if generated.assumption else f.detail
        findings.append(f._replace(where=f"edit {source} at line {line}: {action} {generated.section}", detail=detail))
    name = generated.name or "(the kube-apiserver it generates)"
    subject = Subject(f"{generated.installer} {generated.kind}", generated.namespace, name)
    verdict = Verdict(subject, verdict.containers, tuple(findings), verdict.exempt)
    return Judged(source, doc.index, verdict, doc.line, located)


def judge_text(text: str, source: str, policy: Policy, installer: str | None = None) -> list[Judged]:
    """Raises DocumentError when the text is not manifests or bootstrap configurations, or the installer would
    refuse the configuration. `installer` (k3s, rke2) reads the text as that installer's config.yaml."""
    lines = text.splitlines()
    documents = load_documents(text, source)
    installer = installer or k3s.installer_of_path(source)
    judged = []
    init = next((d.obj for d in documents if d.obj.get("kind") == "InitConfiguration"), None)
    for doc in documents:
        try:
            generated = k3s.from_config(doc.obj, installer) if installer else kubeadm.recognise(doc.obj, init)
        except ConfigError as err:
            raise DocumentError(f"{source}: line {doc.line}: {err}") from None
        if generated is not None:
            judged.append(_judge_generated(generated, doc, lines, source, policy))
        elif doc.obj.get("kind") and not installer:
            judged.append(_judge_manifest(doc, lines, source, policy))
    return judged


def _judge_source(source: str, inputs: Inputs, policy: Policy) -> list[Judged]:
    try:
        text = read_manifest(source)
    except DocumentError as err:
        inputs.errors.append(str(err))
        return []
    except FileNotFoundError:
        inputs.errors.append(f"{source}: no such file or directory")
        return []
    except OSError as err:
        inputs.errors.append(f"{source}: cannot read: {err.strerror or err}")
        return []
    try:
        return judge_text(text, source, policy, inputs.installers.get(source))
    except DocumentError as err:
        if _TEMPLATE_ACTION.search(text):
            # `{{ .Values.x }}` outside a chart folder: a template, not broken YAML.
            inputs.skipped.append(f"{source}: skipped, a template ({{{{ ... }}}}), not YAML")
        else:
            inputs.errors.append(str(err))
    except RecursionError:
        inputs.errors.append(f"{source}: refused: nested too deeply to read")
    except Exception as err:  # one unreadable file must not cost the findings of every other file
        inputs.errors.append(f"{source}: could not be read: {type(err).__name__}: {err}")
    return []


def judge_inputs(inputs: Inputs, policy: Policy) -> list[Judged]:
    """The verdicts of every input, each file read and judged in turn; unusable ones are added to `inputs.errors`
    (and judging goes on), templates to `inputs.skipped`."""
    judged: list[Judged] = []
    for source in inputs.sources:
        judged.extend(_judge_source(source, inputs, policy))
    return judged


__all__ = ["DocumentError", "Inputs", "judge_inputs", "judge_text", "read_inputs", "read_manifest"]

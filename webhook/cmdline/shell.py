"""Split a POSIX shell script (the string after `sh -c`) into the argv of each simple command.

This is not a shell. It reads just enough of the POSIX grammar to find out which programs a wrapper
script runs and with which words: quoting, backslashes, comments, command separators, redirections,
`$(...)` / `${...}` / backticks kept inside their word, and leading `VAR=value` assignments and
`exec`. Nothing is expanded; `${HOST_IP}` stays a literal word, because only the shell in the
container knows its value.
"""

from __future__ import annotations

_SEPARATORS = frozenset({";", "&", "&&", "|", "||", "\n", "(", ")", ";;"})
_REDIRECTIONS = frozenset({">", ">>", "<", "<<", "<<<", ">&", "<&", ">|", "<>", "&>", "&>>"})
# Reserved words that may start a command in front of the one that really runs.
_PREFIX_WORDS = frozenset(
    {"if", "then", "else", "elif", "do", "while", "until", "time", "exec", "command", "!", "{", "}"}
)
_OPERATOR_CHARS = frozenset(";&|()<>\n")


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def _skip_balanced(self, start: int, opening: str, closing: str) -> int:
        """Index just past the `closing` that matches the `opening` at `start` (quotes respected)."""
        depth = 0
        i = start
        text = self.text
        while i < len(text):
            ch = text[i]
            if ch == "\\":
                i += 2
                continue
            if ch == "'":
                end = text.find("'", i + 1)
                i = len(text) if end < 0 else end + 1
                continue
            if ch == '"':
                i = self._skip_double(i + 1)
                continue
            if ch == opening:
                depth += 1
            elif ch == closing:
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
        return len(text)

    def _skip_double(self, i: int) -> int:
        text = self.text
        while i < len(text):
            ch = text[i]
            if ch == "\\":
                i += 2
            elif ch == '"':
                return i + 1
            elif text.startswith("$(", i):
                i = self._skip_balanced(i + 1, "(", ")")
            else:
                i += 1
        return len(text)

    def tokens(self) -> list[tuple[str, bool]]:
        """(text, is_operator) pairs; words have their quotes removed."""
        out: list[tuple[str, bool]] = []
        text = self.text
        n = len(text)
        i = 0
        heredocs: list[tuple[str, bool]] = []  # (delimiter, strip leading tabs) waiting for the next newline
        while i < n:
            ch = text[i]
            if ch == "\n" and heredocs:
                # Here-document bodies are data, never commands (POSIX 2.7.4): skip to each delimiter line.
                out.append(("\n", True))
                i += 1
                for delimiter, strip_tabs in heredocs:
                    while i < n:
                        end = text.find("\n", i)
                        line = text[i : n if end < 0 else end]
                        i = n if end < 0 else end + 1
                        if (line.lstrip("\t") if strip_tabs else line) == delimiter:
                            break
                heredocs = []
                continue
            if ch in " \t\r":
                i += 1
                continue
            if ch == "\\" and i + 1 < n and text[i + 1] == "\n":
                i += 2
                continue
            if ch == "#":
                end = text.find("\n", i)
                i = n if end < 0 else end
                continue
            if ch in _OPERATOR_CHARS:
                op, i = self._operator(i)
                out.append((op, True))
                if op == "<<":
                    strip_tabs = i < n and text[i] == "-"
                    i += strip_tabs
                    while i < n and text[i] in " \t":
                        i += 1
                    delimiter, i, _ = self._word(i)
                    heredocs.append((delimiter, strip_tabs))
                    out.append((delimiter, False))
                continue
            word, i, io_number = self._word(i)
            if io_number and i < n and text[i] in "<>":
                op, i = self._operator(i)
                out.append((op, True))
                continue
            out.append((word, False))
        return out

    def _operator(self, i: int) -> tuple[str, int]:
        text = self.text
        for size in (3, 2):
            candidate = text[i : i + size]
            if candidate in _REDIRECTIONS or candidate in _SEPARATORS:
                return candidate, i + size
        return text[i], i + 1

    def _word(self, i: int) -> tuple[str, int, bool]:
        text = self.text
        n = len(text)
        parts: list[str] = []
        start = i
        while i < n:
            ch = text[i]
            if ch in " \t\r" or ch in _OPERATOR_CHARS:
                break
            if ch == "\\":
                if i + 1 < n and text[i + 1] != "\n":
                    parts.append(text[i + 1])
                i += 2
            elif ch == "'":
                end = text.find("'", i + 1)
                end = n if end < 0 else end
                parts.append(text[i + 1 : end])
                i = end + 1
            elif ch == '"':
                end = self._skip_double(i + 1)
                closed = end - 1 > i and text[end - 1] == '"'
                parts.append(_unescape_double(text[i + 1 : end - 1] if closed else text[i + 1 : end]))
                i = end
            elif text.startswith("$(", i):
                end = self._skip_balanced(i + 1, "(", ")")
                parts.append(text[i:end])
                i = end
            elif text.startswith("${", i):
                end = self._skip_balanced(i + 1, "{", "}")
                parts.append(text[i:end])
                i = end
            elif ch == "`":
                end = text.find("`", i + 1)
                end = n if end < 0 else end + 1
                parts.append(text[i:end])
                i = end
            else:
                parts.append(ch)
                i += 1
        raw = text[start:i]
        return "".join(parts), i, raw.isdigit()


def _unescape_double(body: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body) and body[i + 1] in '$`"\\\n':
            if body[i + 1] != "\n":
                out.append(body[i + 1])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def simple_commands(script: str) -> list[list[str]]:
    """The argv of every simple command in `script`, in order, without redirections and prefixes.

    >>> simple_commands("mkfifo /p; exec /bin/kube-apiserver --v=2 > /p 2>&1")
    [['mkfifo', '/p'], ['/bin/kube-apiserver', '--v=2']]
    """
    commands: list[list[str]] = []
    current: list[str] = []
    expect_target = False
    for text, is_operator in _Reader(script).tokens():
        if is_operator:
            if text in _REDIRECTIONS:
                expect_target = True
                continue
            if current:
                commands.append(current)
            current = []
            expect_target = False
            continue
        if expect_target:
            expect_target = False
            continue
        if not current and (_is_assignment(text) or text in _PREFIX_WORDS):
            continue
        current.append(text)
    if current:
        commands.append(current)
    return commands


def _is_assignment(word: str) -> bool:
    name, sep, _ = word.partition("=")
    return bool(sep) and name.isidentifier()

"""Split a POSIX shell script (the string after `sh -c`) into tokens: words and operators (POSIX XCU 2.3).

This is not a shell. It reads just enough of the grammar to find the words of each command: quoting,
backslashes, comments, command separators, redirections, here-documents, and `$(...)` / `${...}` / backticks
kept inside their word. Words keep their raw text (quotes included) so that `script.py` can expand them as the
shell would; `simple_commands` gives them with quotes removed and nothing expanded.

The scanner is iterative with an explicit stack, so a deeply nested `"$("$("...` cannot exhaust Python's
recursion limit; past MAX_NESTING levels it stops with Unreadable.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from webhook.cmdline.budget import MAX_NESTING, Budget, Unreadable

_SEPARATORS = frozenset({";", "&", "&&", "|", "||", "\n", "(", ")", ";;"})
REDIRECTIONS = frozenset({">", ">>", "<", "<<", "<<<", ">&", "<&", ">|", "<>", "&>", "&>>"})
# Reserved words that may start a command in front of the one that really runs.
_PREFIX_WORDS = frozenset(
    {"if", "then", "else", "elif", "do", "while", "until", "time", "exec", "command", "!", "{", "}"}
)
_OPERATOR_CHARS = frozenset(";&|()<>\n")
# A run of characters that are a word's text as they stand (no quote, escape, expansion, blank or operator).
_PLAIN = re.compile(r"[^ \t\r;&|()<>\n\\'\"$`]+")


class Token(NamedTuple):
    """A word (raw: as written, quotes included; text: quotes removed) or an operator (raw == text)."""

    raw: str
    text: str
    operator: bool
    start: int


def skip(text: str, i: int, closer: str) -> int:
    """Index just past the `closer` that ends what was opened just before `i`: `)` of `$(` or `(`, `}` of `${`,
    `"` of a double quote, a backtick. Quotes and nesting respected; the end of the text if never closed."""
    stack = [closer]
    n = len(text)
    while i < n:
        ch = text[i]
        top = stack[-1]
        if ch == "\\":
            i += 2
            continue
        if top == '"' or top == "`":
            if ch == top:
                stack.pop()
            elif top == '"' and ch == "$" and text.startswith(("$(", "${"), i):
                stack.append(")" if text[i + 1] == "(" else "}")
                i += 1
            elif top == '"' and ch == "`":
                stack.append("`")
        elif ch == "'":
            end = text.find("'", i + 1)
            i = n if end < 0 else end + 1
            continue
        elif ch == '"' or ch == "`":
            stack.append(ch)
        elif ch == "$" and text.startswith(("$(", "${"), i):
            stack.append(")" if text[i + 1] == "(" else "}")
            i += 1
        elif (ch == "(" and top == ")") or (ch == "{" and top == "}"):
            stack.append(top)
        elif ch == top:
            stack.pop()
        i += 1
        if not stack:
            return i
        if len(stack) > MAX_NESTING:
            raise Unreadable(f"quotes and substitutions nested more than {MAX_NESTING} deep")
    return n


def tokens(text: str, budget: Budget | None = None) -> list[Token]:
    """The script's words and operators, in order; here-document bodies are skipped (POSIX 2.7.4: data).
    Linear in the text (one pass; `skip` never rescans), and under the budget."""
    out: list[Token] = []
    n = len(text)
    i = 0
    heredocs: list[tuple[str, bool]] = []  # (delimiter, strip leading tabs) waiting for the next newline
    while i < n:
        ch = text[i]
        if ch == "\n" and heredocs:
            out.append(Token("\n", "\n", True, i))
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
            start = i
            op, i = _operator(text, i)
            out.append(Token(op, op, True, start))
            if op == "<<":
                strip_tabs = i < n and text[i] == "-"
                i += strip_tabs
                while i < n and text[i] in " \t":
                    i += 1
                start = i
                delimiter, i = _word(text, i)
                heredocs.append((delimiter, strip_tabs))
                out.append(Token(text[start:i], delimiter, False, start))
            continue
        start = i
        word, i = _word(text, i)
        raw = text[start:i]
        if raw.isdigit() and i < n and text[i] in "<>":
            op, i = _operator(text, i)  # `2>&1`: the digits name the descriptor, they are not a word
            out.append(Token(op, op, True, start))
            continue
        out.append(Token(raw, word, False, start))
        if budget is not None and not len(out) & 63:
            budget.spend(64)
    return out


def _operator(text: str, i: int) -> tuple[str, int]:
    for size in (3, 2):
        candidate = text[i : i + size]
        if candidate in REDIRECTIONS or candidate in _SEPARATORS:
            return candidate, i + size
    return text[i], i + 1


def _word(text: str, i: int) -> tuple[str, int]:
    """The word starting at `i` with its quotes removed, and the index just past it."""
    n = len(text)
    parts: list[str] = []
    while i < n:
        plain = _PLAIN.match(text, i)
        if plain is not None and plain.end() > i:
            parts.append(plain[0])
            i = plain.end()
            continue
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
            end = skip(text, i + 1, '"')
            closed = end - 1 > i and text[end - 1] == '"'
            parts.append(unescape_double(text[i + 1 : end - 1] if closed else text[i + 1 : end]))
            i = end
        elif text.startswith(("$(", "${"), i):
            end = skip(text, i + 2, ")" if text[i + 1] == "(" else "}")
            parts.append(text[i:end])
            i = end
        elif ch == "`":
            end = skip(text, i + 1, "`")
            parts.append(text[i:end])
            i = end
        else:
            parts.append(ch)
            i += 1
    return "".join(parts), i


def unescape_double(body: str) -> str:
    """Inside double quotes a backslash escapes only `$`, backtick, `"`, backslash and newline (POSIX 2.2.3)."""
    if "\\" not in body:
        return body
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
    """The argv of every simple command in `script`, in order, without redirections and prefixes, unexpanded.

    >>> simple_commands("mkfifo /p; exec /bin/kube-apiserver --v=2 > /p 2>&1")
    [['mkfifo', '/p'], ['/bin/kube-apiserver', '--v=2']]
    """
    commands: list[list[str]] = []
    current: list[str] = []
    expect_target = False
    for token in tokens(script):
        text = token.text
        if token.operator:
            if text in REDIRECTIONS:
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
        if not current and (is_assignment(text) or text in _PREFIX_WORDS):
            continue
        current.append(text)
    if current:
        commands.append(current)
    return commands


def is_assignment(word: str) -> bool:
    name, sep, _ = word.partition("=")
    return bool(sep) and name.isidentifier()

"""What a shell script (`sh -c SCRIPT`) runs: each simple command's words as the shell would pass them.

Followed from POSIX XCU (and confirmed by running dash and bash on the same scripts, see tests/cmdline):
- 2.6.2 parameter expansion: `$v`, `${v}`, `${v:-w}` `${v-w}` `${v:=w}` `${v=w}` `${v:+w}` `${v+w}`, with the
  difference between a variable set to "" and an unset one (the colon forms treat "" as unset);
- 2.5.2 special parameters: `$1`..., `${10}`, `"$@"` (one field per parameter), `"$*"` (joined by a space), `$#`;
- 2.6.5 field splitting of unquoted expansions on the default IFS, and an empty unquoted expansion making no field;
- `set -- words` / `set words` replace the positional parameters, `shift [n]` drops them (XCU set, shift); a
  function's operands are its positional parameters while it runs (2.9.5); `local` is undone on return;
- variables the script assigns (`PKI=/x`, `export`, `readonly`, `local`, `declare`), and the container's env.

What cannot be known stays unknown, marked as expand.UNKNOWN so the flag reader fails the controls it may touch:
variables the image may set (any name the pod env does not give), `valueFrom`, command substitution, `read`,
arithmetic, assignments inside a branch or loop (the reader does not decide conditions), `.`/`source`/`eval` of
words it cannot see. Every simple command that is not a builtin the reader models is handed to the caller, which
decides what the program is (locate.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from webhook.cmdline.budget import (
    MAX_ARGV_ITEMS,
    MAX_SCRIPT_BYTES,
    MAX_SHELL_DEPTH,
    MAX_VALUE_BYTES,
    Budget,
    Unreadable,
)
from webhook.cmdline.expand import UNKNOWN, unknown
from webhook.cmdline.shell import REDIRECTIONS, Token, skip, tokens, unescape_double


class _Unknown:
    """The value of a variable whose content the reader cannot know."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN_VALUE = _Unknown()
Value = str | None | _Unknown  # a string, None for unset, or unknown


@dataclass
class Env:
    """Variables as a program receives them: known values, known-unset names (None), and whether a name not
    listed is unknown (the image's ENV, envFrom, the kubelet's service variables) or unset (`env -i`)."""

    values: dict[str, Value] = field(default_factory=dict)
    rest_unknown: bool = True

    def get(self, name: str) -> Value:
        if name in self.values:
            return self.values[name]
        return UNKNOWN_VALUE if self.rest_unknown else None


# The program runner: argv (expanded, UNKNOWN-marked), the env it gets, and how deep in shells it is.
Runner = Callable[[list[str], Env, int], None]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\+?=")
_SPECIAL = frozenset("@*#?-$!0")
_DEFAULT_IFS = " \t\n"
_GLOB = frozenset("*?[")
_PLAIN_WORD = re.compile(r"[^\\'\"$`\x00]*")
_SPLITTABLE = frozenset(_DEFAULT_IFS)
# Builtins that give names a value from input or arithmetic: each name operand becomes unknown.
_READERS = frozenset({"read", "getopts", "mapfile", "readarray", "let", "printf"})
_DECLARERS = frozenset({"export", "readonly", "local", "declare", "typeset"})
_LOOPS = frozenset({"while", "until", "for", "select"})
_OPENERS = frozenset({"if", "case", *_LOOPS})
_CLOSERS = {"fi": "if", "done": "loop", "esac": "case", "}": "{"}
_RESERVED = frozenset({"if", "then", "else", "elif", "fi", "do", "done", "while", "until", "!", "{", "}", "time"})


def _branching(constructs: Sequence[str]) -> bool:
    """Whether code inside these constructs may or may not run (a `{ }` group always runs)."""
    return any(c != "{" for c in constructs)


class _Frame:
    """The shell's state while one script runs: variables, exported names, positional parameters, functions."""

    def __init__(self, env: Env, zero: str, params: list[str] | None) -> None:
        self.vars: dict[str, Value] = dict(env.values)
        self.rest_unknown = env.rest_unknown
        self.exported: set[str] = set(env.values)
        self.zero = zero
        self.params = params  # None: unknown
        self.functions: dict[str, list[tuple[list[Token], int, int]]] = {}
        self.called: set[str] = set()
        self.locals: list[set[str]] = []  # names made local by each function call under way
        # Shells set IFS to <space><tab><newline> at start whatever the environment says (POSIX 2.5.3; dash, bash).
        self.vars.pop("IFS", None)

    def get(self, name: str) -> Value:
        if name in self.vars:
            return self.vars[name]
        return UNKNOWN_VALUE if self.rest_unknown else None

    def child_env(self, prefix: Mapping[str, Value]) -> Env:
        """What a program started by the script receives: the exported variables, and for every other name
        whatever the shell's own environment held (unknown unless the environment was known entirely)."""
        values: dict[str, Value] = {}
        for name, value in self.vars.items():
            if name in self.exported:
                values[name] = value
            elif not self.rest_unknown:
                values[name] = None
            # else: a shell variable that may or may not shadow one the image exports: leave it unknown
        values.update(prefix)
        return Env(values, self.rest_unknown)

    def forget_everything(self) -> None:
        self.vars = {}
        self.rest_unknown = True
        self.params = None


class _Script:
    def __init__(self, runner: Runner, budget: Budget, depth: int) -> None:
        self.runner = runner
        self.budget = budget
        self.depth = depth

    # --- commands --------------------------------------------------------------------------------------

    def run(self, text: str, frame: _Frame, uncertain: bool) -> None:
        if len(text) > MAX_SCRIPT_BYTES:
            raise Unreadable(f"a script of more than {MAX_SCRIPT_BYTES} bytes")
        toks = tokens(text, self.budget)
        self.block(toks, 0, len(toks), frame, uncertain)

    def block(self, toks: list[Token], lo: int, hi: int, frame: _Frame, uncertain: bool) -> None:
        """Run toks[lo:hi]. `uncertain`: whether this code runs at all is not known."""
        constructs: list[str] = []  # open if/case/loop/subshell/group, innermost last
        words: list[str] = []
        prev = ";"
        redirect = False
        case_pattern = False
        i = lo
        while i < hi:
            if not i & 31:
                self.budget.spend(32)
            tok = toks[i]
            if case_pattern:
                # a case arm's patterns, up to `)`, are not commands; `esac` may come instead
                if tok.operator:
                    case_pattern = tok.text != ")"
                elif tok.text == "esac" and "case" in constructs:
                    case_pattern = False
                    while constructs.pop() != "case":
                        pass
                i += 1
                continue
            if tok.operator:
                op = tok.text
                if op in REDIRECTIONS:
                    redirect = True
                    i += 1
                    continue
                if (
                    op == "("
                    and not words
                    and i + 1 < hi
                    and toks[i + 1].text == "(" == toks[i + 1].raw[:1]
                    and (toks[i + 1].start == tok.start + 1)
                ):
                    i = self.arithmetic(toks, i + 2, hi, frame)  # `(( x += 1 ))`
                    continue
                unsure = uncertain or _branching(constructs) or prev in ("&&", "||", "|") or op in ("|", "&")
                self.simple(words, frame, unsure)
                words = []
                if op == "(":
                    constructs.append("(")
                elif op == ")" and constructs and constructs[-1] == "(":
                    constructs.pop()
                elif op in (";;", ";&") and "case" in constructs:
                    case_pattern = True
                prev = op
                i += 1
                continue
            if redirect:
                redirect = False
                self.expand_word(tok.raw, frame, uncertain or _branching(constructs))  # `> $(cmd)` runs cmd
                i += 1
                continue
            text = tok.text
            if not words and tok.raw == text:
                if text in _OPENERS:
                    if text in _LOOPS:
                        self.loop(toks, i, hi, frame)
                        constructs.append("loop")
                        if text in ("for", "select"):
                            i = self.for_header(toks, i + 1, hi, frame, uncertain)
                            continue
                    else:
                        constructs.append(text)
                    if text == "case":
                        # `case WORD in`: then patterns until `)`, which are not commands
                        i += 3 if i + 2 < hi and toks[i + 2].text == "in" else 1
                        case_pattern = True
                        continue
                    i += 1
                    continue
                if text in _CLOSERS:
                    want = _CLOSERS[text]
                    if want in constructs:
                        while constructs.pop() != want:
                            pass
                    i += 1
                    continue
                if text == "{":
                    constructs.append("{")
                    i += 1
                    continue
                if text in ("then", "else", "elif", "do", "!", "time", "in"):
                    i += 1
                    continue
                if text == "[[":
                    while i < hi and toks[i].text != "]]":
                        i += 1
                    i += 1
                    continue
                definition = self.function_definition(toks, i, hi)
                if definition is not None:
                    name, body_lo, body_hi, i = definition
                    bodies = frame.functions.setdefault(name, [])
                    if not (uncertain or _branching(constructs)):
                        bodies.clear()  # a definition that surely runs replaces the earlier ones
                    bodies.append((toks, body_lo, body_hi))
                    continue
            words.append(tok.raw)
            i += 1
        self.simple(words, frame, uncertain or _branching(constructs) or prev in ("&&", "||", "|"))

    def function_definition(self, toks: list[Token], i: int, hi: int) -> tuple[str, int, int, int] | None:
        """`name() body` (POSIX 2.9.5) or bash's `function name [()] body`: the name, the body's token range
        and where the script goes on."""
        j = i
        if toks[i].text == "function" and i + 1 < hi and not toks[i + 1].operator:
            j = i + 1
        name = toks[j].text
        k = j + 1
        if k + 1 < hi and toks[k].text == "(" and toks[k + 1].text == ")" and toks[k].operator:
            k += 2
        elif j == i:
            return None
        while k < hi and toks[k].text == "\n":
            k += 1
        if k >= hi:
            return None
        opener = toks[k].text
        closer = {"{": "}", "(": ")"}.get(opener)
        if closer is None:
            return None
        depth = 0
        end = k
        while end < hi:
            text = toks[end].text
            if text == opener and (toks[end].operator or toks[end].raw == opener):
                depth += 1
            elif text == closer and (toks[end].operator or toks[end].raw == closer):
                depth -= 1
                if depth == 0:
                    break
            end += 1
        return name, k + 1, min(end, hi), min(end + 1, hi)

    def loop(self, toks: list[Token], i: int, hi: int, frame: _Frame) -> None:
        """A loop's body may run many times, so a name it assigns may hold anything at any point of it."""
        depth = 0
        end = i
        while end < hi:
            text = toks[end].text
            if toks[end].raw == text and not toks[end].operator:
                if text in _LOOPS:
                    depth += 1
                elif text == "done":
                    depth -= 1
                    if depth == 0:
                        break
            end += 1
        names, params = self.assigned(toks[i:end], frame)
        for name in names:
            frame.vars[name] = UNKNOWN_VALUE
        if params:
            frame.params = None

    def assigned(
        self, toks: Sequence[Token], frame: _Frame, seen: frozenset[str] = frozenset()
    ) -> tuple[set[str], bool]:
        """Names a stretch of script may assign, and whether it may change the positional parameters. More
        than it really does is safe, so this reads words loosely; the functions it calls are included."""
        names: set[str] = set()
        params = False
        command: str | None = None
        for tok in toks:
            self.budget.spend()
            if tok.operator:
                command = None
                continue
            raw = tok.raw
            names.update(m[1] for m in _ASSIGNMENT.finditer(raw))
            if "${" in raw:
                names.update(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?=", raw))
            if "((" in raw or "$((" in raw:
                names.update(_NAME.findall(raw))
            if command is None:
                if tok.text in _RESERVED:
                    continue
                command = tok.text
                if command in ("set", "shift"):
                    params = True
                elif command in (".", "source", "eval"):
                    params = True
                    names.update(frame.vars)
                    frame.rest_unknown = True
                elif command in frame.functions and command not in seen:
                    for body, lo, hi in frame.functions[command]:
                        more, more_params = self.assigned(body[lo:hi], frame, seen | {command})
                        names |= more
                        params = params or more_params
            elif command in _READERS or command in _DECLARERS or command in ("for", "select", "unset"):
                names.update(_NAME.findall(raw))
        return names, params

    def for_header(self, toks: list[Token], i: int, hi: int, frame: _Frame, uncertain: bool) -> int:
        """`for NAME [in WORDS]`: NAME takes each word in turn, so it is unknown; the words are expanded."""
        if i < hi and not toks[i].operator:
            frame.vars[toks[i].text] = UNKNOWN_VALUE
            i += 1
        while i < hi and not toks[i].operator and toks[i].text != "do":
            self.expand_word(toks[i].raw, frame, True)
            i += 1
        return i

    def arithmetic(self, toks: list[Token], i: int, hi: int, frame: _Frame) -> int:
        """`(( expression ))`: every name in it may be assigned (`x += 1`)."""
        depth = 2
        while i < hi and depth:
            tok = toks[i]
            if tok.text == "(":
                depth += 1
            elif tok.text == ")":
                depth -= 1
            else:
                for name in _NAME.findall(tok.raw):
                    frame.vars[name] = UNKNOWN_VALUE
            i += 1
        return i

    def simple(self, raw_words: list[str], frame: _Frame, uncertain: bool) -> None:
        """Run one simple command: assignments, builtins the reader models, functions, or a program."""
        if not raw_words:
            return
        prefix: dict[str, Value] = {}
        k = 0
        while k < len(raw_words) and (m := _ASSIGNMENT.match(raw_words[k])):
            value = self.value_of(raw_words[k][m.end() :], frame, uncertain)
            if m[0].endswith("+="):  # bash appends
                old = prefix.get(m[1], frame.get(m[1]))
                value = old + value if isinstance(old, str) and isinstance(value, str) else UNKNOWN_VALUE
            prefix[m[1]] = value
            k += 1
        argv: list[str] = []
        for raw in raw_words[k:]:
            argv.extend(self.expand_word(raw, frame, uncertain))
            self.budget.spend(len(argv))
            if len(argv) > MAX_ARGV_ITEMS:
                raise Unreadable(f"more than {MAX_ARGV_ITEMS} words in one command")
        if not argv:
            for name, value in prefix.items():
                self.assign(frame, name, value, uncertain)
            return
        self.command(argv, frame, uncertain, prefix)

    def command(self, argv: list[str], frame: _Frame, uncertain: bool, prefix: Mapping[str, Value]) -> None:
        while argv:
            name = argv[0]
            if name == "exec":
                # exec [-cl] [-a NAME] command (bash; dash's exec takes no options)
                argv = argv[1:]
                while argv and argv[0].startswith("-") and argv[0] != "-":
                    option = argv.pop(0)
                    if option == "--":
                        break
                    if option.endswith("a") and argv:
                        argv.pop(0)
                continue
            if name in ("command", "builtin"):
                argv = argv[1:]
                if argv and argv[0] in ("-v", "-V"):
                    return  # prints how a name would be found; runs nothing
                while argv and argv[0] in ("-p", "--"):
                    argv = argv[1:]
                continue
            break
        if not argv:
            return
        name = argv[0]
        if UNKNOWN in name:
            self.runner(argv, frame.child_env(prefix), self.depth)
            return
        if name in frame.functions:
            self.call(name, argv[1:], frame, uncertain)
            return
        if name in ("set", "shift"):
            self.positional(name, argv[1:], frame, uncertain)
            return
        if name in _DECLARERS:
            self.declare(name, argv[1:], frame, uncertain)
            return
        if name == "unset":
            for operand in argv[1:]:
                if _NAME.fullmatch(operand):
                    self.assign(frame, operand, None, uncertain)
                elif operand == "-f":
                    return  # functions stay as they were: a call would still be judged
            return
        if name in _READERS:
            for operand in argv[1:]:
                for word in _NAME.findall(operand):
                    frame.vars[word] = UNKNOWN_VALUE
            return
        if name == "eval":
            text = " ".join(argv[1:])
            if UNKNOWN in text:
                frame.forget_everything()
                self.runner([unknown("eval " + text.replace(UNKNOWN, ""))], frame.child_env(prefix), self.depth)
                return
            self.nested().run(text, frame, uncertain)
            return
        if name in (".", "source"):
            frame.forget_everything()
            self.runner(argv, frame.child_env(prefix), self.depth)
            return
        if name == "trap" and len(argv) > 2:
            # the action runs later, when a signal comes: it may run anything it names
            if UNKNOWN in argv[1]:
                self.runner([unknown("trap " + argv[1].replace(UNKNOWN, ""))], frame.child_env(prefix), self.depth)
            else:
                self.nested().run(argv[1], frame, True)
            return
        if name == "alias":
            for operand in argv[1:]:
                self.nested().run(operand.partition("=")[2], frame, True)
            return
        self.runner(argv, frame.child_env(prefix), self.depth)

    def nested(self) -> _Script:
        if self.depth >= MAX_SHELL_DEPTH:
            raise Unreadable(f"shells, eval and functions nested more than {MAX_SHELL_DEPTH} deep")
        return _Script(self.runner, self.budget, self.depth + 1)

    def call(self, name: str, operands: list[str], frame: _Frame, uncertain: bool) -> None:
        """A function runs in the same shell with its operands as the positional parameters (POSIX 2.9.5)."""
        frame.called.add(name)
        saved_params = frame.params
        saved_vars = dict(frame.vars)
        inner = self.nested()
        bodies = frame.functions[name]
        frame.locals.append(set())
        for body, lo, hi in list(bodies):
            frame.params = list(operands)
            inner.block(body, lo, hi, frame, uncertain or len(bodies) > 1)
            if lo > 0 and body[lo - 1].operator and body[lo - 1].text == "(":
                frame.vars = dict(saved_vars)  # `f() ( ... )`: the body runs in a subshell, its assignments go
        frame.params = saved_params
        for local in frame.locals.pop():
            if local in saved_vars:
                frame.vars[local] = saved_vars[local]
            else:
                frame.vars.pop(local, None)

    def positional(self, name: str, operands: list[str], frame: _Frame, uncertain: bool) -> None:
        """XCU `set` (options, then `--` or the first operand starts the new parameters) and `shift [n]`."""
        if any(UNKNOWN in operand for operand in operands):
            frame.params = None
            return
        new: list[str] | None = None
        if name == "shift":
            count = operands[0] if operands else "1"
            if not count.isdigit() or frame.params is None or int(count) > len(frame.params):
                new = None  # dash exits ("can't shift that many"), bash leaves them: either way not readable
            else:
                new = frame.params[int(count) :]
        else:
            k = 0
            while k < len(operands) and operands[k][:1] in ("-", "+") and operands[k] not in ("-", "--"):
                k += 1 + operands[k].count("o") + operands[k].count("O")  # -o NAME, -euo pipefail
            if k < len(operands) and operands[k] in ("-", "--"):
                new = operands[k + 1 :]
            elif k < len(operands):
                new = operands[k:]
            else:
                return  # only options: the parameters stay
        frame.params = None if uncertain else new

    def declare(self, name: str, operands: list[str], frame: _Frame, uncertain: bool) -> None:
        """`export`/`readonly`/`local`/`declare` NAME[=VALUE]: an assignment; `-i`, `-n` and the like make it
        something else, so the names are left unknown."""
        plain = True
        exported = False
        for operand in operands:
            if operand.startswith(("-", "+")):
                plain = plain and set(operand[1:]) <= {"x", "r", "g", "p"}
                exported = exported or "x" in operand
                continue
            var, sep, value = operand.partition("=")
            if not _NAME.fullmatch(var):
                continue
            if name == "local" and frame.locals:
                frame.locals[-1].add(var)
            if name == "export" or (name in ("declare", "typeset") and exported):
                frame.exported.add(var)
            if not plain:
                frame.vars[var] = UNKNOWN_VALUE
            elif sep:
                self.assign(frame, var, UNKNOWN_VALUE if UNKNOWN in value else value, uncertain)
            elif name == "local":
                self.assign(frame, var, frame.get(var), uncertain)

    def assign(self, frame: _Frame, name: str, value: Value, uncertain: bool) -> None:
        frame.vars[name] = UNKNOWN_VALUE if uncertain else value

    # --- words -----------------------------------------------------------------------------------------

    def value_of(self, raw: str, frame: _Frame, uncertain: bool) -> Value:
        """An assignment's value: expanded, never split or globbed (POSIX 2.9.1)."""
        fields = self.expand_word(raw, frame, uncertain, split=False)
        value = "".join(fields)
        return UNKNOWN_VALUE if UNKNOWN in value else value

    def expand_word(
        self, raw: str, frame: _Frame, uncertain: bool, split: bool = True, splits_literals: bool = False
    ) -> list[str]:
        """The fields one word becomes: parameter expansion, command substitution (its commands are run,
        in a subshell), field splitting of unquoted results, quote removal (POSIX 2.6)."""
        if _PLAIN_WORD.fullmatch(raw) and not (splits_literals and _SPLITTABLE & set(raw)):
            return [raw] if raw else []  # nothing to expand or remove: most words of a script
        out = _Fields()
        i = 0
        n = len(raw)
        quoted = False
        while i < n:
            ch = raw[i]
            if ch == "\\":
                if quoted:
                    if i + 1 < n and raw[i + 1] in '$`"\\\n':
                        if raw[i + 1] != "\n":
                            out.add(raw[i + 1])
                        i += 2
                        continue
                    out.add(ch)
                    i += 1
                    continue
                if i + 1 < n and raw[i + 1] != "\n":
                    out.add(raw[i + 1])
                out.touch()
                i += 2
                continue
            if ch == "'" and not quoted:
                end = raw.find("'", i + 1)
                end = n if end < 0 else end
                out.add(raw[i + 1 : end])
                out.touch()
                i = end + 1
                continue
            if ch == '"':
                quoted = not quoted
                out.touch()
                i += 1
                continue
            if ch == "`":
                end = skip(raw, i + 1, "`")
                body = raw[i + 1 : end - 1] if end - 1 > i and raw[end - 1] == "`" else raw[i + 1 : end]
                self.substitute(unescape_double(body), frame)
                out.add_unknown(raw[i:end], quoted or not split)
                i = end
                continue
            if ch == UNKNOWN:
                # the kubelet's `$(NAME)` whose value is not known: any text at all (expand.py)
                end = raw.find(UNKNOWN, i + 1)
                end = n if end < 0 else end
                out.add_unknown(raw[i + 1 : end], True)
                i = end + 1
                continue
            if ch == "$" and i + 1 < n:
                if raw[i + 1] in "'\"" and not quoted:
                    # bash's $'...' and $"..." (dash reads a plain `$`): which one runs is not known here
                    end = skip(raw, i + 2, raw[i + 1]) if raw[i + 1] == '"' else raw.find("'", i + 2) + 1 or n
                    out.add_unknown(raw[i:end], True)
                    i = end
                    continue
                i = self.dollar(raw, i, frame, uncertain, out, quoted or not split)
                continue
            if splits_literals and not quoted and ch in _DEFAULT_IFS:
                out.split_here()
            else:
                out.add(ch)
            i += 1
        return out.done()

    def dollar(self, raw: str, i: int, frame: _Frame, uncertain: bool, out: _Fields, quoted: bool) -> int:
        nxt = raw[i + 1]
        if nxt == "(":
            end = skip(raw, i + 2, ")")
            body = raw[i + 2 : end - 1]
            if body.startswith("(") and body.endswith(")"):
                for name in _NAME.findall(body):  # $(( x = 1 )) may assign
                    if "=" in body:
                        frame.vars[name] = UNKNOWN_VALUE
            else:
                self.substitute(body, frame)
            out.add_unknown(raw[i:end], quoted)
            return end
        if nxt == "{":
            end = skip(raw, i + 2, "}")
            self.braced(raw[i:end], raw[i + 2 : end - 1], frame, uncertain, out, quoted)
            return end
        if nxt in _SPECIAL or nxt.isdigit():
            self.parameter(nxt, raw[i : i + 2], frame, out, quoted)
            return i + 2
        match = _NAME.match(raw, i + 1)
        if match is None:
            out.add("$")  # `$` before anything else is itself (POSIX 2.6.2)
            return i + 1
        self.put(frame.get(match[0]), raw[i : match.end()], out, quoted, frame)
        return match.end()

    def braced(self, ref: str, inner: str, frame: _Frame, uncertain: bool, out: _Fields, quoted: bool) -> None:
        match = re.match(r"([A-Za-z_][A-Za-z0-9_]*|\d+|[@*#?$!-])(:?[-=+?])?", inner)
        if match is None or (match.end() < len(inner) and match[2] is None):
            out.add_unknown(ref, quoted)  # ${#v}, ${v%x}, ${v/a/b}, ...: not modelled
            return
        name, op = match[1], match[2]
        if op is None:
            self.parameter(name, ref, frame, out, quoted)
            return
        value = self.lookup(name, frame)
        word = inner[match.end() :]
        if isinstance(value, _Unknown):
            self.expand_word(word, frame, uncertain, split=False)  # for the substitutions it may run
            out.add_unknown(ref, quoted)
            return
        empty = value is None or (op[0] == ":" and value == "")
        kind = op[-1]
        use_word = not empty if kind == "+" else empty
        if kind == "?":
            if use_word:
                out.add_unknown(ref, quoted)  # the shell stops with an error: nothing after it runs
            else:
                self.put(value, ref, out, quoted, frame)
            return
        if not use_word:
            if kind == "+":
                return
            self.put(value, ref, out, quoted, frame)
            return
        if kind == "+" or kind == "-":
            # the word's unquoted text is part of the expansion's result, so it is split too (dash, bash)
            pieces = self.expand_word(word, frame, uncertain, split=not quoted, splits_literals=not quoted)
            for index, piece in enumerate(pieces):
                if index:
                    out.split_here()
                out.add(piece)
                if quoted:
                    out.touch()
            return
        # `=`: assign the word, then expand to the new value (not for positional or special parameters)
        new = self.value_of(word, frame, uncertain)
        if not _NAME.fullmatch(name):
            out.add_unknown(ref, quoted)
            return
        self.assign(frame, name, new, uncertain)
        self.put(new, ref, out, quoted, frame)

    def lookup(self, name: str, frame: _Frame) -> Value:
        if name.isdigit():
            if name == "0":
                return frame.zero
            if frame.params is None:
                return UNKNOWN_VALUE
            index = int(name) - 1
            return frame.params[index] if index < len(frame.params) else None
        if name == "#":
            return UNKNOWN_VALUE if frame.params is None else str(len(frame.params))
        if name in _SPECIAL:
            return UNKNOWN_VALUE  # $? $$ $! $-: only the running shell knows
        return frame.get(name)

    def parameter(self, name: str, ref: str, frame: _Frame, out: _Fields, quoted: bool) -> None:
        if name in ("@", "*"):
            if frame.params is None:
                out.add_unknown(ref, quoted)
            elif name == "@" and quoted:
                for index, param in enumerate(frame.params):  # "$@": one field each, even empty ones
                    if index:
                        out.split_here()
                    out.add(param)
                    out.touch()
            elif quoted:
                out.add(" ".join(frame.params))
                out.touch()
            else:
                for index, param in enumerate(frame.params):
                    if index:
                        out.split_here()
                    out.put_split(param, ref)
            return
        self.put(self.lookup(name, frame), ref, out, quoted, frame)

    def put(self, value: Value, ref: str, out: _Fields, quoted: bool, frame: _Frame) -> None:
        if isinstance(value, _Unknown):
            out.add_unknown(ref, quoted)
        elif value is None or quoted:
            out.add(value or "")
        elif frame.vars.get("IFS", _DEFAULT_IFS) != _DEFAULT_IFS:
            out.add_unknown(ref, quoted)  # a script's own IFS: splitting by it is not modelled
        else:
            out.put_split(value, ref)

    def substitute(self, body: str, frame: _Frame) -> None:
        """A command substitution runs its commands in a subshell: they count, their assignments do not."""
        sub = _Frame(Env(dict(frame.vars), frame.rest_unknown), frame.zero, frame.params)
        sub.exported = set(frame.exported)
        sub.functions = frame.functions
        self.nested().run(body, sub, True)


class _Fields:
    """Fields being built from one word: text pieces, where unquoted expansions split them, and unknown parts."""

    __slots__ = ("current", "exists", "fields")

    def __init__(self) -> None:
        self.fields: list[str] = []
        self.current: list[str] = []
        self.exists = False

    def add(self, text: str) -> None:
        if text:
            self.current.append(text)
            self.exists = True

    def touch(self) -> None:
        """Quotes make a field even when empty: `""` is one empty argument."""
        self.exists = True

    def split_here(self) -> None:
        if self.exists:
            self.fields.append("".join(self.current))
        self.current = []
        self.exists = False

    def add_unknown(self, ref: str, quoted: bool) -> None:
        self.current.append(unknown(ref))
        self.exists = True

    def put_split(self, value: str, ref: str) -> None:
        """An unquoted expansion's value: split on the default IFS (POSIX 2.6.5), globbed (2.6.6)."""
        if _GLOB & set(value):
            self.add_unknown(ref, False)  # pathname expansion depends on the files in the container
            return
        if value[:1] in _DEFAULT_IFS and value:
            self.split_here()
        parts = value.split()
        for index, part in enumerate(parts):
            if index:
                self.split_here()
            self.add(part)
        if value[-1:] in _DEFAULT_IFS and value and parts:
            self.split_here()

    def done(self) -> list[str]:
        self.split_here()
        if sum(map(len, self.fields)) > MAX_VALUE_BYTES:
            raise Unreadable(f"a word of more than {MAX_VALUE_BYTES} bytes once expanded")
        return self.fields


def run(
    script: str, zero: str, params: Sequence[str] | None, env: Env, runner: Runner, budget: Budget, depth: int
) -> None:
    """Run `sh -c SCRIPT ZERO PARAMS...` as far as it can be read: every program it starts goes to `runner`.

    Functions the script defines but never visibly calls are still read, with unknown parameters: a trap or
    an unreadable word may call them.
    """
    if depth > MAX_SHELL_DEPTH:
        raise Unreadable(f"shells nested more than {MAX_SHELL_DEPTH} deep")
    frame = _Frame(env, zero, list(params) if params is not None else None)
    reader = _Script(runner, budget, depth)
    reader.run(script, frame, False)
    for name, bodies in list(frame.functions.items()):
        if name not in frame.called:
            frame.params = None
            for body, lo, hi in bodies:
                reader.nested().block(body, lo, hi, frame, True)

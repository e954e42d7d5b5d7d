"""`apiserver-tls-guard completion bash|zsh|fish`: shell completion scripts written from the argument parser itself,
so that every subcommand, option and choice is completed as `--help` lists it, with nothing to keep in step.

Hand-written rather than from a library (shtab, argcomplete): the parser is small and flat (one level of
subcommands, options, choices, files), the scripts are a few dozen lines, and nothing is added to the image.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

SHELLS = ("bash", "zsh", "fish")


@dataclass(frozen=True)
class _Option:
    names: tuple[str, ...]  # --format, -n
    takes_value: bool
    choices: tuple[str, ...]
    help: str


@dataclass(frozen=True)
class _Command:
    name: str
    help: str
    options: tuple[_Option, ...]
    positional_choices: tuple[str, ...]  # e.g. `completion`'s shells
    takes_files: bool  # positionals without choices: file names


def _command(name: str, help_text: str, parser: argparse.ArgumentParser) -> _Command:
    options: list[_Option] = []
    positional: list[str] = []
    files = False
    for action in parser._actions:  # argparse has no public walk over its actions
        choices = tuple(str(c) for c in action.choices or ()) if not isinstance(action.choices, dict) else ()
        if action.option_strings:
            options.append(_Option(tuple(action.option_strings), action.nargs != 0, choices, action.help or ""))
        elif choices:
            positional.extend(choices)
        else:
            files = True
    return _Command(name, help_text, tuple(options), tuple(positional), files)


def _commands(parser: argparse.ArgumentParser) -> tuple[tuple[_Option, ...], tuple[_Command, ...]]:
    top = tuple(
        _Option(tuple(a.option_strings), a.nargs != 0, (), a.help or "") for a in parser._actions if a.option_strings
    )
    commands: list[_Command] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: str(choice.help or "") for choice in action._choices_actions}
            commands.extend(_command(name, helps.get(name, ""), sub) for name, sub in action.choices.items())
    return top, tuple(commands)


def _bash(prog: str, top: tuple[_Option, ...], commands: tuple[_Command, ...]) -> str:
    function = "_" + prog.replace("-", "_")
    top_words = " ".join([c.name for c in commands] + [n for o in top for n in o.names])
    values: list[str] = []
    per_command: list[str] = []
    for command in commands:
        words = [n for o in command.options for n in o.names]
        per_command.append(
            f'        {command.name}) opts="{" ".join(words)}"; choices="{" ".join(command.positional_choices)}" ;;'
        )
        free: list[str] = []
        for option in command.options:
            patterns = [f'"{command.name} {n}"' for n in option.names]
            if option.choices:
                reply = f'COMPREPLY=($(compgen -W "{" ".join(option.choices)}" -- "$cur"))'
                values.append(f"        {'|'.join(patterns)}) {reply}; return ;;")
            elif option.takes_value:
                free.extend(patterns)
        if free:
            # A value that is free (a file, a name, a number) gets bash's default, file names.
            values.append(f"        {'|'.join(free)}) return ;;")
    lines = [
        f"# bash completion for {prog}: source <({prog} completion bash)",
        f"{function}() {{",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}" cmd="" opts="" choices="" i',
        '    if [[ "$prev" == "=" && $COMP_CWORD -ge 2 ]]; then prev="${COMP_WORDS[COMP_CWORD-2]}"; fi',
        '    [[ "$cur" == "=" ]] && cur=""',
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        '        case "${COMP_WORDS[i]}" in -*) ;; *) cmd="${COMP_WORDS[i]}"; break ;; esac',
        "    done",
        '    if [[ -z "$cmd" ]]; then',
        f'        COMPREPLY=($(compgen -W "{top_words}" -- "$cur"))',
        "        return",
        "    fi",
        '    case "$cmd $prev" in',
        *values,
        "    esac",
        '    case "$cmd" in',
        *per_command,
        "    esac",
        '    if [[ "$cur" == -* ]]; then',
        '        COMPREPLY=($(compgen -W "$opts" -- "$cur"))',
        '    elif [[ -n "$choices" ]]; then',
        '        COMPREPLY=($(compgen -W "$choices" -- "$cur"))',
        "    fi",
        "}",
        f"complete -o default -F {function} {prog}",
    ]
    return "\n".join(lines) + "\n"


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _short_help(text: str) -> str:
    first = text.split(";")[0].split(". ")[0]
    return first if len(first) <= 70 else first[:69] + "…"


def _fish(prog: str, top: tuple[_Option, ...], commands: tuple[_Command, ...]) -> str:
    lines = [f"# fish completion for {prog}: {prog} completion fish | source", f"complete -c {prog} -f"]
    for option in top:
        lines.append(f"complete -c {prog} -n __fish_use_subcommand {_fish_flags(option)}")
    for command in commands:
        lines.append(
            f"complete -c {prog} -n __fish_use_subcommand -a {command.name} -d {_fish_quote(_short_help(command.help))}"
        )
        seen = f"-n '__fish_seen_subcommand_from {command.name}'"
        if command.positional_choices:
            lines.append(f"complete -c {prog} {seen} -a {_fish_quote(' '.join(command.positional_choices))}")
        if command.takes_files:
            lines.append(f"complete -c {prog} {seen} -F")
        for option in command.options:
            lines.append(f"complete -c {prog} {seen} {_fish_flags(option)}")
    return "\n".join(lines) + "\n"


def _fish_flags(option: _Option) -> str:
    parts = []
    for name in option.names:
        parts.append(f"-l {name[2:]}" if name.startswith("--") else f"-s {name[1:]}")
    if option.choices:
        parts.append(f"-x -a {_fish_quote(' '.join(option.choices))}")
    elif option.takes_value:
        parts.append("-r -F")
    if option.help:
        parts.append(f"-d {_fish_quote(_short_help(option.help))}")
    return " ".join(parts)


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script for `shell` (bash, zsh, fish) of the parser's program."""
    prog = parser.prog
    top, commands = _commands(parser)
    if shell == "fish":
        return _fish(prog, top, commands)
    bash = _bash(prog, top, commands)
    if shell == "zsh":
        # zsh runs bash completion functions through its bashcompinit layer.
        return f"#compdef {prog}\nautoload -U +X bashcompinit && bashcompinit\n{bash}"
    return bash


__all__ = ["SHELLS", "script"]

"""Shell completion for bash and zsh, generated from the commands' own
argument parsers, so that it cannot drift from --help (as the man pages are
kept honest by tests/test_manpages.py).

    python -m iatools.commands.completion bash ia-fetch   # one command's bash script
    python -m iatools.commands.completion zsh             # one zsh file for them all

``make install`` writes them where bash-completion and zsh look.
"""

import argparse
import importlib
import sys

COMMANDS = ("ia-resolve", "ia-joblog", "ia-route", "ia-fetch", "ia-verify")
#: Metavars whose values are paths: files, or directories only.
_FILE_METAVARS = {"FILE", "LOG"}
_DIR_METAVARS = {"DIR"}


def parser_of(command):
    module = importlib.import_module("iatools.commands." + command.removeprefix("ia-"))
    return module.build_parser()


def subcommands(parser):
    """``{name: parser}`` of a parser's subcommands (ia-joblog's), or {}."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def options(parser):
    """``[(option strings, value kind or None, help)]`` of the options
    --help shows; the value kind is "file", "dir" or "value"."""
    found = []
    for action in parser._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        found.append((action.option_strings, _value_kind(action), _help_of(action, parser)))
    return found


def positional_kind(parser):
    """What a parser's positional arguments are: "file", "dir" or None."""
    kinds = {_path_kind(a.metavar) for a in parser._actions
             if not a.option_strings and not isinstance(a, argparse._SubParsersAction)
             and a.help != argparse.SUPPRESS}
    return "dir" if "dir" in kinds else "file" if "file" in kinds else None


def _value_kind(action):
    if action.nargs == 0:
        return None
    return _path_kind(action.metavar) or "value"


def _path_kind(metavar):
    if metavar in _FILE_METAVARS:
        return "file"
    if metavar in _DIR_METAVARS:
        return "dir"
    return None


def _help_of(action, parser):
    """The first clause of an option's help, as --help shows it."""
    text = (action.help or "") % dict(vars(action), prog=parser.prog)
    return text.split(";")[0].split(" (")[0]


# -- bash -------------------------------------------------------------------
def bash_script(command):
    parser = parser_of(command)
    function = "_" + command.replace("-", "_")
    subs = subcommands(parser)
    lines = [f"# bash completion for {command}, generated from its parser "
             "(python -m iatools.commands.completion bash)",
             f"{function}() {{",
             '    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}',
             '    local command="" word']
    if subs:  # the subcommand typed so far, if any
        lines += ['    for word in "${COMP_WORDS[@]:1:COMP_CWORD-1}"; do',
                  f'        case $word in {"|".join(subs)}) command=$word; break;; esac',
                  "    done"]
    lines += ['    case "$command" in']
    lines += _bash_case("", parser, list(subs))
    for name, sub in subs.items():
        lines += _bash_case(name, sub, [])
    lines += ["    esac", "}", f"complete -o bashdefault -o default -F {function} {command}", ""]
    return "\n".join(lines)


def _bash_case(name, parser, words):
    """The branch of the script for the main parser ("") or a subcommand."""
    found = options(parser)
    values = {kind: [s for strings, k, _ in found if k == kind for s in strings]
              for kind in ("file", "dir", "value")}
    flags = [s for strings, _, _ in found for s in strings]
    lines = [f'        "{name}")', '            case $prev in']
    if values["dir"]:
        lines.append(f'                {"|".join(values["dir"])}) '
                     'COMPREPLY=($(compgen -d -- "$cur")); return;;')
    if values["file"]:
        lines.append(f'                {"|".join(values["file"])}) '
                     'COMPREPLY=($(compgen -f -- "$cur")); return;;')
    if values["value"]:  # a number, a query ...: nothing to offer
        lines.append(f'                {"|".join(values["value"])}) COMPREPLY=(); '
                     'compopt +o default +o bashdefault 2>/dev/null; return;;')
    lines.append("            esac")
    if positional_kind(parser) == "dir":
        others = 'COMPREPLY=($(compgen -d -- "$cur"))'
    elif words:
        others = f'COMPREPLY=($(compgen -W "{" ".join(words)}" -- "$cur"))'
    else:
        others = "COMPREPLY=()  # a file name, by -o default"
    lines += ['            if [[ $cur == -* ]]; then',
              f'                COMPREPLY=($(compgen -W "{" ".join(flags)}" -- "$cur"))',
              "            else",
              f"                {others}",
              "            fi;;"]
    return lines


# -- zsh --------------------------------------------------------------------
def zsh_script():
    lines = [f"#compdef {' '.join(COMMANDS)}",
             "# zsh completion for iatools, generated from the commands' parsers "
             "(python -m iatools.commands.completion zsh)", ""]
    for command in COMMANDS:
        lines += _zsh_function(command, parser_of(command))
    lines += ["case $service in"]
    lines += [f"  {command}) {_zsh_name(command)} \"$@\";;" for command in COMMANDS]
    lines += ["esac", ""]
    return "\n".join(lines)


def _zsh_function(command, parser):
    subs = subcommands(parser)
    lines = [f"{_zsh_name(command)}() {{"]
    specs = _zsh_specs(parser)
    if not subs:
        lines += ["  _arguments -s -S \\"] + [f"    {spec} \\" for spec in specs]
        lines += [f"    {_zsh_positional(parser)}", "}", ""]
        return lines
    choices = " ".join(f"{name}\\:'{_summary(sub)}'" for name, sub in subs.items())
    lines += ["  local curcontext=$curcontext state line", "  _arguments -C \\"]
    lines += [f"    {spec} \\" for spec in specs]
    lines += [f"    \"1:command:(({choices}))\" \\", "    '*::argument:->argument'",
              "  case $line[1] in"]
    for name, sub in subs.items():
        lines += [f"    {name}) _arguments -s -S \\"]
        lines += [f"      {spec} \\" for spec in _zsh_specs(sub)]
        lines += [f"      {_zsh_positional(sub)};;"]
    lines += ["  esac", "}", ""]
    return lines


def _zsh_specs(parser):
    specs = []
    for strings, kind, help_text in options(parser):
        action = {"file": ":file:_files", "dir": ":directory:_files -/",
                  "value": ":value: "}.get(kind, "")
        described = f"[{_zsh_quote(help_text)}]{action}"
        if len(strings) == 1:
            specs.append(f"'{strings[0]}{described}'")
        else:
            exclusive = " ".join(strings)
            specs.append(f"'({exclusive})'{{{','.join(strings)}}}'{described}'")
    return specs


def _zsh_positional(parser):
    kind = positional_kind(parser)
    if kind == "dir":
        return "'*:directory:_files -/'"
    return "'*:file:_files'" if kind == "file" else "'*: :'"


def _zsh_quote(text):
    """Help text inside a single-quoted _arguments spec."""
    for char in "\\[]:":  # the backslash first: the others add some
        text = text.replace(char, "\\" + char)
    return text.replace("'", "'\\''")


def _summary(parser):
    """A subcommand's description, safe inside '' inside "" in zsh."""
    text = (parser.description or "").split("\n")[0]
    return "".join(c for c in text if c not in "'\"$`\\")


def _zsh_name(command):
    return "_" + command.replace("-", "_")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["zsh"] and len(argv) == 1:
        sys.stdout.write(zsh_script())
        return 0
    if argv[:1] == ["bash"] and len(argv) == 2 and argv[1] in COMMANDS:
        sys.stdout.write(bash_script(argv[1]))
        return 0
    sys.stderr.write("usage: python -m iatools.commands.completion bash COMMAND | zsh\n"
                     f"  COMMAND: {', '.join(COMMANDS)}\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())

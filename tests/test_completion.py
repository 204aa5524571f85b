"""Shell completion lists every option --help shows, for each command and
each subcommand: bash's is run in a real bash, zsh's is read (no zsh here),
and `make install-completion` puts both where the shells look."""

import re
import subprocess

import pytest

from tests.helpers import PYTHON, REPO, command
from tests.test_manpages import (COMMANDS, help_text, help_texts, options_in_help,
                                 subcommands_in_help)


def script(shell, *args):
    return subprocess.run([PYTHON, "-m", "iatools.commands.completion", shell, *args], cwd=REPO,
                          capture_output=True, check=True).stdout.decode()


def bash_completes(script_text, words):
    """What bash offers for the last of ``words`` (a command line)."""
    function = "_" + words[0].replace("-", "_")
    program = (f"{script_text}\nCOMP_WORDS=({' '.join(words)} '')\n"
               f"COMP_WORDS[-1]={words[-1]!r}; unset 'COMP_WORDS[-2]'\n"
               "COMP_WORDS=(\"${COMP_WORDS[@]}\"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))\n"
               f"{function}; printf '%s\\n' \"${{COMPREPLY[@]}}\"\n")
    result = subprocess.run(["bash", "--norc", "-c", program], capture_output=True, check=True)
    return set(result.stdout.decode().split())


@pytest.mark.parametrize("name", COMMANDS)
def test_bash_offers_every_option_of_every_subcommand(name):
    text = script("bash", name)
    for what, help_output in help_texts(name):
        words = what.split()
        assert bash_completes(text, words + ["-"]) == options_in_help(help_output), what


def test_bash_offers_subcommands_then_their_arguments(tmp_path):
    text = script("bash", "ia-joblog")
    assert bash_completes(text, ["ia-joblog", "st"]) == {"status"}
    assert bash_completes(text, ["ia-joblog", "-v", "s"]) == {"skip", "status"}
    (tmp_path / "disk-a").mkdir()
    (tmp_path / "disk-file").touch()
    route = script("bash", "ia-route")
    assert bash_completes(route, ["ia-route", "-d", f"{tmp_path}/disk"]) == {f"{tmp_path}/disk-a"}
    assert bash_completes(route, ["ia-route", "--margin", "1"]) == set()


@pytest.mark.parametrize("name", COMMANDS)
def test_zsh_lists_every_option_of_every_subcommand(name):
    text = script("zsh")
    assert set(text.partition("\n")[0].split()) == {"#compdef", *COMMANDS}
    function = re.search(rf"^_{name.replace('-', '_')}\(\) {{\n(.*?)^}}$", text,
                         re.MULTILINE | re.DOTALL).group(1)
    parts = re.split(r"^    (\w+)\) _arguments", function, flags=re.MULTILINE)
    listed = {"": parts[0], **dict(zip(parts[1::2], parts[2::2]))}
    for what, help_output in help_texts(name):
        sub = what.partition(" ")[2]
        found = set(re.findall(r"(?:'|\{|,|\()(--?[\w-]+)(?=[\[,} )])", listed[sub]))
        assert found == options_in_help(help_output), what
    assert set(listed) - {""} == subcommands_in_help(help_text(command(name)))


def test_make_install_puts_them_where_the_shells_look(tmp_path):
    subprocess.run(["make", "-s", "install-completion", f"DESTDIR={tmp_path}", "PREFIX=/usr",
                    f"PYTHON={PYTHON}"], cwd=REPO, check=True, capture_output=True)
    bash = tmp_path / "usr/share/bash-completion/completions"
    assert sorted(p.name for p in bash.iterdir()) == sorted(COMMANDS)
    assert (bash / "ia-fetch").read_text() == script("bash", "ia-fetch")
    assert (tmp_path / "usr/share/zsh/site-functions/_iatools").read_text() == script("zsh")

"""The man pages cannot drift from the commands: every option and command
that --help shows is documented, every exit status a command can return is
listed, and every page renders without a groff warning.

The man pages are written by hand (for the prose and the examples); these
tests are what keeps them honest, as sqlite-utils' test_docs does."""

import re
import shutil
import subprocess

import pytest

from iatools.base.status import ExitStatus
from iatools.contract import jobs, jsonl
from tests.helpers import BIN, REPO, command, run

MAN = REPO / "man"
COMMANDS = sorted(path.name for path in BIN.iterdir() if path.name.startswith("ia-"))
PAGES = sorted(MAN.glob("*.[1-8]"))
#: What a command's exit statuses are, unless it says more.
COMMON_STATUSES = {s for s in ExitStatus if s != ExitStatus.NO_SPACE}
STATUSES = {"ia-route": set(ExitStatus)}
REQUIRED_SECTIONS = ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXAMPLES", "EXIT STATUS",
                     "SEE ALSO"]


@pytest.fixture(params=COMMANDS)
def name(request):
    return request.param


def page_source(name, section=1):
    path = MAN / f"{name}.{section}"
    if not path.exists():
        pytest.fail(f"{name} has no man page ({path.relative_to(REPO)})")
    return path.read_text()


def unescape(roff):
    """Roff source as a reader sees the words: escapes and fonts gone."""
    text = "\n".join(line for line in roff.splitlines() if not line.startswith('.\\"'))
    for escape, plain in (("\\-", "-"), ("\\e", "\\"), ("\\~", " "), ("\\&", ""),
                          ("\\(aq", "'"), ("\\(em", "--")):
        text = text.replace(escape, plain)
    return re.sub(r"\\f[BIRP]", "", text)


def sections(roff):
    """{title: source} of a page's .SH sections, in order."""
    parts = re.split(r"^\.SH +(.+)$", roff, flags=re.MULTILINE)
    return {title.strip().strip('"'): body for title, body in zip(parts[1::2], parts[2::2])}


def help_text(*args):
    result = run([*args, "--help"])
    assert result.returncode == 0, result.stderr
    return result.stdout.decode()


OPTION = re.compile(r"(?<![\w-])--?[A-Za-z][\w-]*")


def options_in_help(text):
    """Option strings from the usage line and the option list of --help
    (not from the prose or examples of the epilog)."""
    usage, _, rest = text.partition("\n\n")
    found = set(OPTION.findall(usage))
    for line in rest.splitlines():
        if re.match(r"^ {2}-", line):
            invocation = re.split(r" {2,}", line.strip())[0]
            found.update(OPTION.findall(invocation))
    return found


def subcommands_in_help(text):
    """Names listed under the COMMAND positional argument of --help."""
    section = text.partition("positional arguments:")[2].partition("\n\n")[0]
    return {m for m in re.findall(r"^ {4}([a-z][\w-]*)(?: {2,}|$)", section, re.MULTILINE)}


def help_texts(name):
    """[(what, help text)] for the command and each of its subcommands."""
    top = help_text(command(name))
    texts = [(name, top)]
    for sub in sorted(subcommands_in_help(top)):
        texts.append((f"{name} {sub}", help_text(command(name), sub)))
    return texts


def mentions(text, word):
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) is not None


# ---------------------------------------------------------------- the help parser

def test_the_help_parser_finds_options_and_subcommands():
    """Guard against a parser that finds nothing and so checks nothing."""
    top = help_text(command("ia-joblog"))
    assert subcommands_in_help(top) == {"append", "tee", "skip", "pending", "failed", "completed",
                                        "status",
                                        "locks"}
    assert {"-h", "--help", "--version", "-q", "--quiet"} <= options_in_help(top)
    assert "-j" not in options_in_help(top)  # only in an example of the epilog
    assert {"--json", "--by"} <= options_in_help(help_text(command("ia-joblog"), "status"))
    resolve = options_in_help(help_text(command("ia-resolve")))
    assert {"-s", "--search", "-i", "--itemlist", "-f", "--field", "--page-size"} <= resolve


# ---------------------------------------------------------------- options and commands

def entry_tags(section):
    """The tag lines of the .TP entries of a section: what each describes."""
    lines = section.splitlines()
    return "\n".join(tag for marker, tag in zip(lines, lines[1:]) if marker.startswith(".TP"))


def test_every_option_in_help_has_an_entry_in_the_man_page(name):
    tags = entry_tags(sections(unescape(page_source(name))).get("OPTIONS", ""))
    missing = {}
    for what, help_output in help_texts(name):
        for option in options_in_help(help_output):
            if not mentions(tags, option):
                missing.setdefault(option, []).append(what)
    assert not missing, f"OPTIONS of man/{name}.1 has no entry for: {missing}"


def test_every_option_in_the_man_page_is_real(name):
    """The other way round: an entry for an option that --help no longer
    shows (renamed, removed) is a lie to the reader."""
    tags = entry_tags(sections(unescape(page_source(name))).get("OPTIONS", ""))
    real = set().union(*(options_in_help(text) for _, text in help_texts(name)))
    documented = set(OPTION.findall(tags))
    assert documented <= real, f"man/{name}.1 documents options --help lacks: " \
                               f"{sorted(documented - real)}"


def test_every_subcommand_is_in_the_synopsis_and_described(name):
    subcommands = subcommands_in_help(help_text(command(name)))
    if not subcommands:
        pytest.skip(f"{name} has no subcommands")
    parts = sections(unescape(page_source(name)))
    described = "".join(body for title, body in parts.items() if title not in ("NAME", "SYNOPSIS"))
    for sub in subcommands:
        assert mentions(parts["SYNOPSIS"], sub), f"{sub} missing from the SYNOPSIS"
        assert re.search(rf"^\.(?:B|BI|TP)\s+{sub}\b", described, re.MULTILINE), \
            f"{sub} has no entry of its own in man/{name}.1"


def test_options_are_written_with_escaped_hyphens():
    """A bare - in roff may print as a hyphen (U+2010), and a command copied
    from the page would then fail."""
    for page in PAGES:
        for number, line in enumerate(page.read_text().splitlines(), 1):
            if line.startswith('.\\"'):
                continue
            bare = re.findall(r"(?<![\w\\-])--?[A-Za-z][\w-]*", line)
            assert not bare, f"{page.name}:{number}: write {bare[0]} with \\-: {line}"


# ---------------------------------------------------------------- sections and statuses

def test_the_page_has_the_usual_sections_in_order(name):
    titles = list(sections(page_source(name)))
    present = [t for t in titles if t in REQUIRED_SECTIONS]
    assert present == REQUIRED_SECTIONS, f"man/{name}.1 sections: {titles}"
    assert unescape(sections(page_source(name))["NAME"]).strip().startswith(f"{name} - ")


def listed_statuses(roff):
    body = sections(roff).get("EXIT STATUS", "")
    return {int(n) for n in re.findall(r"^\.(?:B|TP\n\.B)\s+(\d+)\s*$", body, re.MULTILINE)}


def test_exit_status_lists_every_status_the_command_can_return(name):
    listed = listed_statuses(page_source(name))
    expected = {int(s) for s in STATUSES.get(name, COMMON_STATUSES)}
    assert expected <= listed, f"man/{name}.1 EXIT STATUS lacks {sorted(expected - listed)}"
    assert listed <= {int(s) for s in ExitStatus}, \
        f"man/{name}.1 lists statuses iatools.base.status does not have: {listed - set(ExitStatus)}"


def test_iatools_7_lists_every_exit_status():
    assert listed_statuses(page_source("iatools", 7)) == {int(s) for s in ExitStatus}


def test_iatools_7_documents_the_contract_in_full():
    page = unescape(page_source("iatools", 7))
    parts = sections(page)
    for field in sorted(jobs.EVENT_FIELDS):
        assert re.search(rf"^\.B {field}$", parts["EVENTS"], re.MULTILINE), \
            f"event field {field} has no entry in EVENTS"
        assert mentions(parts["RESERVED NAMES"], field), f"{field} not listed as reserved"
    for field in ("id", "file", "size", "destdir"):
        assert re.search(rf"^\.B {field}$", parts["JOBS"], re.MULTILINE), field
    for kind in ("queued", "started", "completed", "failed", "skipped", "planned"):
        assert re.search(rf"^\.B {kind}$", parts["EVENTS"], re.MULTILINE), kind
    assert str(jsonl.MAX_LINE_BYTES) in parts["INPUT RULES"]
    for name in COMMANDS:
        assert mentions(parts["SEE ALSO"], name), name


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_see_also_points_to_iatools_7(page):
    if page.name == "iatools.7":
        pytest.skip("the overview itself")
    assert "iatools (7)" in sections(page.read_text()).get("SEE ALSO", "")


# ---------------------------------------------------------------- rendering

@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_the_page_renders_without_warnings(page):
    if shutil.which("groff"):
        result = subprocess.run(["groff", "-man", "-ww", "-z", str(page)], capture_output=True)
    elif shutil.which("man"):
        result = subprocess.run(["man", "--warnings", "-l", str(page)], capture_output=True,
                                env={"MANPAGER": "cat", "MANWIDTH": "80", "PATH": "/usr/bin:/bin"})
    else:
        pytest.skip("neither groff nor man is installed")
    assert result.returncode == 0
    assert result.stderr.decode() == ""

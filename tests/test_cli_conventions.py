"""What every command in bin/ promises, checked on the real launchers:
--help and --version on stdout with status 0, usage errors as
"NAME: error: ..." with status 2, and never a Python traceback."""

import argparse
import errno
import io

import pytest

from iatools import __version__
from iatools.base.status import ExitStatus
from iatools.contract import cli
from tests.helpers import BIN, command, run

COMMANDS = sorted(path.name for path in BIN.iterdir() if path.name.startswith("ia-"))


@pytest.fixture(params=COMMANDS)
def name(request):
    return request.param


def assert_no_traceback(result):
    assert b"Traceback" not in result.stderr, result.stderr.decode(errors="replace")


def test_the_commands_are_found():
    assert {"ia-resolve", "ia-joblog", "ia-route", "ia-fetch"} <= set(COMMANDS)


def test_help_goes_to_stdout(name):
    result = run([command(name), "--help"])
    assert result.returncode == 0
    assert_no_traceback(result)
    help_text = result.stdout.decode()
    assert help_text.startswith(f"usage: {name} ")
    assert "--help" in help_text and "--version" in help_text
    assert result.stderr == b""


def test_short_help_is_the_same(name):
    assert run([command(name), "-h"]).stdout == run([command(name), "--help"]).stdout


def test_version(name):
    result = run([command(name), "--version"])
    assert result.returncode == 0
    assert_no_traceback(result)
    assert result.stdout.decode() == f"{name} (iatools) {__version__}\n"
    assert result.stderr == b""


@pytest.mark.parametrize("args", [["--no-such-option"], ["--no-such-option", "x"], ["-Z"]])
def test_an_unknown_option_is_a_usage_error(name, args):
    result = run([command(name), *args], input=b"")
    assert result.returncode == 2
    assert_no_traceback(result)
    stderr = result.stderr.decode()
    assert stderr.startswith(f"{name}: error: "), stderr
    assert f"{name} --help" in stderr  # says where to look
    assert result.stdout == b""


def test_an_option_value_of_the_wrong_type_is_a_usage_error(name):
    """Every command that takes a number rejects a word cleanly."""
    help_text = run([command(name), "--help"]).stdout.decode()
    numeric = [opt for opt in ("--jobs", "--retries", "--page-size", "--timeout")
               if opt in help_text]
    if not numeric:
        pytest.skip(f"{name} has no numeric option")
    for option in numeric:
        result = run([command(name), option, "many"], input=b"")
        assert result.returncode == 2, option
        assert_no_traceback(result)
        assert result.stderr.decode().startswith(f"{name}: error: "), option


def test_joblog_subcommands_follow_the_same_rules():
    for sub in ("append", "tee", "skip", "pending", "failed", "status"):
        helped = run([command("ia-joblog"), sub, "--help"])
        assert helped.returncode == 0
        assert helped.stdout.decode().startswith(f"usage: ia-joblog {sub} ")
        wrong = run([command("ia-joblog"), sub, "--no-such-option", "LOG"])
        assert wrong.returncode == 2
        assert_no_traceback(wrong)
        assert wrong.stderr.decode().startswith("ia-joblog: error: ")


@pytest.mark.parametrize("field", ["id", "file", "size", "event", "ts", "bytes", "error"])
def test_resolve_refuses_a_reserved_field_name(field):
    """A user field named like an event field is lost on the way (stripped
    when an event is read back as a job), and --field event=completed would
    even make ia-joblog append record a completion that never happened."""
    result = run([command("ia-resolve"), "nasa", "--field", f"{field}=x"])
    assert result.returncode == 2, result.stdout
    assert result.stderr.decode().startswith("ia-resolve: error: --field")
    assert result.stdout == b""


@pytest.mark.parametrize("seconds", ["0", "-1", "nan", "inf"])
@pytest.mark.parametrize("name", ["ia-fetch", "ia-verify", "ia-resolve"])
def test_a_timeout_must_be_a_finite_number_of_seconds_above_0(name, seconds):
    """A timeout of 0 made every request of ia-fetch's workers crash."""
    result = run([command(name), f"--timeout={seconds}"], input=b"")
    assert result.returncode == 2, result.stderr
    assert_no_traceback(result)
    assert result.stderr.decode().startswith(f"{name}: error: argument --timeout: ")
    assert result.stdout == b""


def test_a_system_error_no_command_foresaw_is_one_line_and_status_1():
    """The last net of every command (cli.run): an OSError that no caller
    turned into a message of its own says its file and reason, no
    traceback, status 1; the run's output stays as it was written."""
    def body(args):
        args.streams.stdout.write(b'{"id":"a"}\n')
        raise OSError(errno.ENOSPC, "No space left on device", "/mnt/a/item/file.bin")

    stdout, stderr = io.BytesIO(), io.StringIO()
    streams = cli.Streams(stdin=io.BytesIO(), stdout=stdout, stderr=stderr)
    status = cli.run(argparse.ArgumentParser(prog="ia-example"), body, [], streams)
    assert status == ExitStatus.FAILED == 1
    assert stderr.getvalue() == "ia-example: error: /mnt/a/item/file.bin: No space left on device\n"
    assert stdout.getvalue() == b'{"id":"a"}\n'

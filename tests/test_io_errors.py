"""Standard streams and files that fail: an output on a full disk
(/dev/full), an input opened write-only, an item list that is a directory,
an output closed by its reader.  Each command says what it could not do,
in one line, with the documented status."""

import subprocess

from tests.helpers import base_env, command


def run_on(args, stdin, stdout, env=None):
    """Run a command on the given files as its stdin and stdout; its exit
    status and stderr."""
    process = subprocess.run(args, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE,
                             env=env or base_env(), timeout=120)
    return process.returncode, process.stderr.decode()


def assert_says(status, stderr, expected_status, message):
    assert "Traceback" not in stderr, stderr
    assert message in stderr.splitlines(), stderr
    assert status == expected_status, stderr


def test_an_item_list_that_is_a_directory_is_a_usage_error(tmp_path):
    status, stderr = run_on([command("ia-resolve"), "-i", str(tmp_path)], subprocess.DEVNULL,
                            subprocess.PIPE)
    assert_says(status, stderr, 2, f"ia-resolve: error: cannot read item list {tmp_path}: "
                                   "Is a directory")

"""The folders of iatools/ are layers, and a module imports only from its
own layer and those below it (README, "How the code is laid out"): read
from the source, so a new upward import fails here, not in a review."""

import ast

import pytest

from tests.helpers import REPO

PACKAGE = REPO / "iatools"
#: Each layer and the layers it may import from, besides itself.
BELOW = {
    "base": set(),
    "contract": {"base"},
    "log": {"contract", "base"},
    "fetching": {"contract", "base"},
    "routing": {"contract", "base"},
    "commands": {"log", "fetching", "routing", "contract", "base"},
}


def layer_imports(path):
    """The iatools layers a module imports from (``from iatools.X ...``,
    ``import iatools.X``, ``from iatools import X``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("iatools"):
            parts = node.module.split(".")
            found.update([parts[1]] if len(parts) > 1 else [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names
                         if a.name.startswith("iatools."))
    return found - {"__version__"}


def test_every_module_is_in_a_layer():
    assert {p.name for p in PACKAGE.glob("*.py")} == {"__init__.py"}
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"} \
        == set(BELOW)


@pytest.mark.parametrize("layer", sorted(BELOW))
def test_imports_go_down_only(layer):
    allowed = BELOW[layer] | {layer}
    wrong = {f"{path.relative_to(PACKAGE)} imports iatools.{name}"
             for path in sorted((PACKAGE / layer).glob("*.py"))
             for name in layer_imports(path) - allowed}
    assert not wrong


def test_the_check_sees_an_upward_import(tmp_path):
    module = tmp_path / "probe.py"
    module.write_text("from iatools.commands.fetch import main\nfrom iatools import log\n")
    assert layer_imports(module) == {"commands", "log"}

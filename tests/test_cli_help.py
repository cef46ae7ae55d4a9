"""The command line's help at 80 columns: every command has a one-line summary in the command list, and every
option of every command has one line of help that fits beside it (its default may take a second line)."""
import pytest
import typer
from click.testing import CliRunner as ClickRunner

from fashion2stage.app.cli import app

WIDTH = 80
COMMAND = typer.main.get_command(app)
# the service's options live in fashion2stage/app/serve/command.py, beside the service
OWN = [name for name in COMMAND.commands if name != "serve"]


def _help(*args: str) -> str:
    result = ClickRunner().invoke(COMMAND, [*args, "--help"], terminal_width=WIDTH, env={"COLUMNS": str(WIDTH)})
    assert result.exit_code == 0, result.output
    return result.output


def _entries(text: str) -> dict[str, list[str]]:
    """Option or argument -> its lines in the help, from the 'Arguments:' and 'Options:' sections."""
    out, current, section = {}, None, False
    for line in text.splitlines():
        if line in ("Arguments:", "Options:"):
            section = True
        elif section and line.startswith("  ") and not line.startswith("   "):
            current = line.split()[0]
            out[current] = [line]
        elif section and line.startswith("   ") and current:
            out[current].append(line)
        elif not line.strip():
            current = None
    return out


def test_the_command_list_has_one_line_per_command():
    text = _help()
    listed = text[text.index("Commands:"):].splitlines()[1:]
    assert len(listed) == len(COMMAND.commands) and all(len(line) <= WIDTH for line in text.splitlines())
    assert not [line for line in listed if line.rstrip().endswith("...")], listed


@pytest.mark.parametrize("name", OWN)
def test_every_option_has_one_line_of_help_at_80_columns(name):
    sub = COMMAND.commands[name]
    text = _help(name)
    assert all(len(line) <= WIDTH for line in text.splitlines()), text
    entries = _entries(text)
    for param in sub.params:
        assert param.help, f"{name} {param.name}: no help"
        flag = param.opts[0] if param.param_type_name == "option" else (param.metavar or param.name).upper()
        lines = next(v for k, v in entries.items() if (k if k.startswith("-") else k.upper().rstrip(".")) == flag)
        assert param.help.strip() in " ".join(lines[0].split()), f"{name} {flag}: help wraps: {lines}"
        assert len(lines) <= 2, f"{name} {flag}: more than the help and its default: {lines}"  # e.g. [default: 8]


def test_the_version():
    assert _help().count("--version") == 1
    result = ClickRunner().invoke(COMMAND, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("fashion2stage ")

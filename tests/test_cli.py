from typer.testing import CliRunner

import twn_rag
from twn_rag.cli import app


def test_version_command():
    result = CliRunner().invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.output.strip() == twn_rag.__version__

"""``python -m fashion2stage ...``: the same command line as the ``fashion2stage`` console script."""
from fashion2stage.app.cli import app

app(prog_name="fashion2stage")

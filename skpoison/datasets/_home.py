"""Where the downloadable data sets live on disk."""

import os
from pathlib import Path


def data_folder(data_home, name):
    """The folder that holds (or will hold) the files of data set ``name``.

    ``data_home`` itself when given; else ``$SKPOISON_DATA/<name>`` when the
    environment variable is set; else ``~/skpoison_data/<name>``.
    """
    if data_home is not None:
        return Path(os.fspath(data_home)).expanduser()
    env = os.environ.get("SKPOISON_DATA")
    if env:
        return Path(env).expanduser() / name
    return Path.home() / "skpoison_data" / name


def where_to_put(name):
    """The end of a missing-file message: the three ways to point at the files."""
    return (
        "set the SKPOISON_DATA environment variable to a folder whose "
        f"'{name}' subfolder holds them, or pass data_home=<folder holding them> "
        "(--data-home on the skpoison command line)."
    )

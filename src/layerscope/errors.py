"""Errors raised at layerscope's boundaries: each says what was wrong and how to fix it."""

from __future__ import annotations


class LayerscopeError(Exception):
    """Base class of every error layerscope raises on purpose (the CLI prints it in one line, exit 2)."""


class UnknownSiteError(LayerscopeError, KeyError):
    """A site name that the model's adapter does not know."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ModelLoadError(LayerscopeError):
    """A model name/path that cannot be loaded."""


class DataError(LayerscopeError):
    """A dataset file or in-memory dataset that is malformed; names the file and line where known."""

    def __init__(self, message: str, *, path: object | None = None, line: int | None = None) -> None:
        where = ""
        if path is not None:
            where = f"{path}"
            if line is not None:
                where += f", line {line}"
            where += ": "
        super().__init__(where + message)
        self.path = path
        self.line = line


class StoreError(LayerscopeError):
    """An activation store that is missing, corrupt, or was made for other inputs."""


class ConfigError(LayerscopeError, ValueError):
    """An argument value that is out of range or inconsistent with the others."""


class FetchError(LayerscopeError):
    """An embedded default (model package, corpus) that could not be fetched or verified."""


class InterventionError(LayerscopeError):
    """An intervention function that returned something unusable."""

"""Models: loading (embedded defaults and any transformers model) and per-architecture site adapters."""

from .adapter import Adapter, Resolved
from .subject import ImageSpec, SiteInfo, Subject
from .tables import TABLES, ArchTable, Hookpoint
from .zoo import list_models, load

__all__ = [
    "TABLES",
    "Adapter",
    "ArchTable",
    "Hookpoint",
    "ImageSpec",
    "Resolved",
    "SiteInfo",
    "Subject",
    "list_models",
    "load",
]

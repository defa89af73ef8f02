"""The live dashboard: an ASGI app over the run store, the sweeps and analyze/, read-only."""

from cnnlab.ui.app import create_app
from cnnlab.ui.server import DEFAULT_HOST, DEFAULT_PORT, serve
from cnnlab.ui.source import Source, open_source

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "Source", "create_app", "open_source", "serve"]

"""botguard: find scrapers and bad bots in web access logs.

The library does the work (``botguard.pipeline``); ``botguard.cli`` is a thin Typer layer on top.
"""

__version__ = "0.1.0"

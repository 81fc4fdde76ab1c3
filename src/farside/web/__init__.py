"""The web console at ``/ui``: the pool at a glance, DR configuration, the DR wizard and its history.

Server-rendered pages (Starlette and Jinja2) with a little plain JavaScript for live updates; every
read and change goes through XenAPI as the logged-in user (``farside.web.client``).
"""

from farside.web.app import console_app
from farside.web.console import Console

__all__ = ["Console", "console_app"]

"""A Jupyter authorizer that lets the browser read agent tasks but not change them.

The browser tests' kernel and the tests' own HTTP client (Python user agents) keep
every right, so a kernel can start a run; the browser (a Chrome user agent) may
read the ``agentkit`` resource but not write it. It stands in for a deployment's
read-only user (a JupyterHub scope, say): the server decides, the page is not
touched. Loaded by ``--ServerApp.authorizer_class=read_only_authorizer.BrowserReadOnlyAuthorizer``
from the server's working directory.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.authorizer import Authorizer

AGENTKIT_RESOURCE = "agentkit"


class BrowserReadOnlyAuthorizer(Authorizer):
    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        agent = handler.request.headers.get("User-Agent", "")
        return not (resource == AGENTKIT_RESOURCE and action == "write" and "Chrome/" in agent)

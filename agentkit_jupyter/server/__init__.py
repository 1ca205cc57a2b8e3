"""The Jupyter server extension: a thin adapter from HTTP and WebSockets to the task hub.

The layer's rule: handlers parse and check a request (Jupyter's authentication and
authorization, the protocol's limits), call the hub, and write the protocol's
messages; nothing here runs agents or keeps tasks. ``app`` wires configuration and
routes; ``rest`` and ``websocket`` each end with their own ``default_handlers``;
``frames`` isolates what relies on Tornado internals. Handlers reach the extension
through ``self.extensionapp``: no module here imports the app.
"""

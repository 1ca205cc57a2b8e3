"""What runs in the kernel (or any Python process): the client, local runs, the widget.

``client`` talks to the server (REST with httpx, streams with ``websockets``);
``local_run`` runs a notebook agent in this process and publishes it to the hub;
``widget`` is the anywidget the notebook user holds, ``static_html`` its copy for
GitHub and nbviewer; ``agent`` is the notebook ``Agent`` with ``run()``.
"""

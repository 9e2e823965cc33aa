"""mitmproxy addons of the policy proxy, one feature per module, in hook order (see `default_addons`).
No addon may ever block the event loop on network I/O.
"""

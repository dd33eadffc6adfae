"""Whether the Hugging Face hub can be reached: offline, huggingface_hub retries every file for minutes."""
from __future__ import annotations

import os
import socket
import urllib.parse


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` is set (by the user, or by huggingface_hub's own constants)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub's host answers at all (one TCP connection, ``timeout`` seconds)."""
    from huggingface_hub import constants

    endpoint = urllib.parse.urlparse(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname or "huggingface.co", port), timeout=timeout).close()
    except OSError:
        return False
    return True


def cache_only() -> bool:
    """Load from the local Hugging Face cache only: offline, or the hub does not answer."""
    return hub_offline() or not hub_reachable()

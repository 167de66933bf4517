"""The backbones' error type and the Hugging Face hub helpers (reachability, offline switch) shared by every loader."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse

from huggingface_hub import constants

logger = logging.getLogger(__name__)


class BackboneError(RuntimeError):
    """A backbone cannot be built or its weights cannot be loaded; the message says why and what to do."""


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the model hub answers a TCP connection within `timeout` seconds (False in offline mode)."""
    if constants.HF_HUB_OFFLINE:
        return False
    host = urlparse(constants.ENDPOINT).hostname or ""
    try:
        socket.create_connection((host, urlparse(constants.ENDPOINT).port or 443), timeout=timeout).close()
    except OSError:
        logger.debug("the model hub %s is not reachable", host)
        return False
    return True


@contextmanager
def hub_offline(offline: bool) -> Iterator[None]:
    """Switch huggingface_hub to offline mode (cached files only, no retries) for the duration."""
    old = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = old or offline
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = old


__all__ = ["BackboneError", "hub_offline", "hub_reachable"]

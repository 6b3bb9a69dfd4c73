"""This product's HTTP app served as a Modal web endpoint (``modal_app.py``).

It is the same app, so the client is ``HttpWorker``; with Modal's proxy auth on the endpoint,
every request and WebSocket upgrade also carries the token (``Modal-Key``, ``Modal-Secret``),
which Modal checks before the app sees the request.
"""

from __future__ import annotations

import httpx
from pydantic import SecretStr

from edge.workers.http_api import HttpWorker


class ModalWorker(HttpWorker):
    """``HttpWorker`` at ``base_url`` with ``token`` (id, secret) for Modal's proxy auth."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float,
        retries: int,
        token: tuple[SecretStr, SecretStr] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = None
        if token is not None:
            token_id, token_secret = token
            headers = {
                "Modal-Key": token_id.get_secret_value(),
                "Modal-Secret": token_secret.get_secret_value(),
            }
        super().__init__(
            base_url, timeout_s=timeout_s, retries=retries, headers=headers, transport=transport
        )

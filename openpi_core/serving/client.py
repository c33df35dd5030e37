"""`WebsocketPolicyClient`: a remote policy server behind the `PolicyClient` protocol (imports no JAX).

Talks to our `PolicyServer` and to openpi's own `serve_policy.py` alike. A request the server refuses raises
`PolicyServerError` with the server's reason; a lost connection raises `PolicyConnectionError` and the next call
reconnects, so a robot loop can skip one tick and carry on.
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from typing import Any

import websockets
from websockets.sync.client import ClientConnection, connect

from openpi_core.errors import OpenpiError
from openpi_core.serving import codec

__all__ = ["PolicyConnectionError", "PolicyServerError", "WebsocketPolicyClient"]

logger = logging.getLogger(__name__)


class PolicyServerError(OpenpiError):
    """The server answered a request with an error (bad observation, policy failure)."""


class PolicyConnectionError(OpenpiError, ConnectionError):
    """The server cannot be reached, refused the handshake, or dropped the connection."""


class WebsocketPolicyClient:
    """`infer`/`reset`/`metadata` against ``ws://host:port`` (or ``wss://``).

    `connect_timeout_s` bounds each connection attempt and `connect_retries` how many are made (1 s apart) before
    `PolicyConnectionError`; `timeout_s` bounds one request (a model on a cold GPU compiles on its first call:
    allow for it).
    """

    def __init__(
        self,
        url: str = "ws://127.0.0.1:8000",
        *,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        connect_retries: int = 1,
        max_message_bytes: int | None = 64 * 2**20,
    ) -> None:
        parsed = urllib.parse.urlparse(url if "://" in url else f"ws://{url}")
        if parsed.scheme not in ("ws", "wss") or not parsed.hostname:
            raise ValueError(f"policy server url must look like ws://host:port, got {url!r}")
        if connect_retries < 1:
            raise ValueError(f"connect_retries must be >= 1, got {connect_retries}")
        self.url = parsed.geturl()
        self._api_key = api_key
        self._timeout = timeout_s
        self._connect_timeout = connect_timeout_s
        self._retries = connect_retries
        self._max_size = max_message_bytes
        self._ws: ClientConnection | None = None
        self._metadata: dict[str, Any] = {}
        self._connect()

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self._metadata)

    def reset(self) -> None:
        """Nothing to reset on the client; like openpi's client, the server keeps no per-client episode state."""

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        if self._ws is None:
            self._connect()
        assert self._ws is not None
        payload = codec.packb(obs)
        try:
            self._ws.send(payload)
            reply = self._ws.recv(timeout=self._timeout)
        except TimeoutError as e:
            self._drop()  # a late reply would be read as the answer to the next request
            raise PolicyConnectionError(f"no reply from {self.url} within {self._timeout} s") from e
        except websockets.ConnectionClosed as e:
            self._drop()
            raise PolicyConnectionError(f"connection to {self.url} lost: {e}") from e
        if isinstance(reply, str):
            raise PolicyServerError(f"policy server {self.url}: {reply}")
        result = codec.unpackb(reply)
        if not isinstance(result, dict) or "actions" not in result:
            raise PolicyServerError(f"policy server {self.url} sent a reply without 'actions'")
        return result

    def close(self) -> None:
        self._drop()

    def __enter__(self) -> WebsocketPolicyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _drop(self) -> None:
        if self._ws is not None:
            try:
                self._ws.close()
            finally:
                self._ws = None

    def _connect(self) -> None:
        headers = {"Authorization": f"Api-Key {self._api_key}"} if self._api_key else None
        last: Exception | None = None
        for attempt in range(self._retries):
            if attempt:
                time.sleep(1.0)
            try:
                ws = connect(
                    self.url,
                    additional_headers=headers,
                    compression=None,
                    max_size=self._max_size,
                    open_timeout=self._connect_timeout,
                    legacy=True,  # a long-lived connection owned by this object, closed in close()
                )
            except websockets.InvalidStatus as e:
                status = e.response.status_code
                body = e.response.body.decode(errors="replace").strip()
                raise PolicyConnectionError(f"policy server {self.url} refused the connection: {status} {body}") from e
            except (OSError, TimeoutError, websockets.InvalidHandshake) as e:
                last = e
                logger.debug("connecting to %s failed (attempt %d/%d): %s", self.url, attempt + 1, self._retries, e)
                continue
            try:
                first = ws.recv(timeout=self._connect_timeout)
                metadata = codec.unpackb(first) if isinstance(first, bytes) else None
            except (TimeoutError, websockets.ConnectionClosed, codec.CodecError) as e:
                ws.close()
                last = e
                continue
            if not isinstance(metadata, dict):
                ws.close()
                raise PolicyConnectionError(f"{self.url} did not send policy metadata first: is it a policy server?")
            self._ws, self._metadata = ws, metadata
            logger.info("connected to policy server %s (%s)", self.url, metadata.get("config_name", "?"))
            return
        raise PolicyConnectionError(f"cannot connect to policy server {self.url} ({self._retries} tries): {last}")

"""A websocket policy server that openpi's own `openpi_client.WebsocketClientPolicy` talks to unchanged.

Protocol (openpi's): on connect the server sends the policy metadata as one msgpack frame; then each binary frame
from the client is an observation (msgpack with numpy arrays, see `codec`) and is answered with one frame holding
the policy's output plus ``server_timing``. A request that cannot be served is answered with a *text* frame holding
the reason (openpi's client raises it as ``RuntimeError``), and the connection stays open. ``GET /healthz`` answers
``200 OK`` without a websocket handshake.

Beyond openpi's server: it binds 127.0.0.1 unless told otherwise, can require a shared token
(``Authorization: Api-Key <token>``, what openpi's client sends for ``api_key=``; 401 otherwise), limits the message
size (larger frames close the connection with code 1009), caps the number of clients (503 beyond), buffers at
most `max_queue` unread frames per client (so memory is bounded by clients x (max_queue + 1) x max message size;
a client that floods the server is slowed by TCP, not buffered), validates observations against an
`ObservationSpec`, and serves several clients at once (inference itself runs one request at a time in a worker
thread, so the event loop keeps answering health checks and handshakes). A request whose inference takes longer
than `inference_timeout_s` is answered with an error; while the worker is stuck in such a call, ``/healthz``
answers ``503`` and new requests are refused at once, until the call returns.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import hmac
import http
import logging
import threading
import time
import traceback
from typing import Any

import websockets
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from openpi_core.errors import InvalidObservationError
from openpi_core.policies.protocol import PolicyClient
from openpi_core.serving import codec
from openpi_core.serving.spec import ObservationSpec

__all__ = ["PolicyServer", "ServerConfig", "ServerStats"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000  # openpi's default; 0 picks a free port
    api_key: str | None = None  # None: no authentication (only sensible on 127.0.0.1 or a trusted network)
    max_message_bytes: int = 16 * 2**20  # 3 cameras 480x640 raw are 2.8 MB
    max_clients: int = 16
    max_queue: int = 1  # unread frames buffered per client beyond the one being served
    inference_timeout_s: float | None = 30.0  # a slower request is answered with an error (None: wait forever)
    # Ping the client this often and drop it when no pong comes within the same time (None: never).
    ping_interval_s: float | None = 20.0

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        if self.max_message_bytes < 1024:
            raise ValueError(f"max_message_bytes must be >= 1024, got {self.max_message_bytes}")
        if self.max_clients < 1:
            raise ValueError(f"max_clients must be >= 1, got {self.max_clients}")
        if self.api_key is not None and not self.api_key:
            raise ValueError("api_key must be non-empty (or None for no authentication)")
        if self.max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {self.max_queue}")
        if self.inference_timeout_s is not None and not self.inference_timeout_s > 0:
            raise ValueError(f"inference_timeout_s must be > 0 (or None), got {self.inference_timeout_s}")


@dataclasses.dataclass
class ServerStats:
    """Counters since start (read them from any thread)."""

    connections: int = 0
    served: int = 0
    refused: int = 0
    rejected_handshakes: int = 0
    timeouts: int = 0


class PolicyServer:
    """Serve `policy` over websockets. `serve_forever()` blocks; `start()`/`stop()` run it in a background thread."""

    def __init__(
        self,
        policy: PolicyClient,
        config: ServerConfig = ServerConfig(),
        *,
        spec: ObservationSpec | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.policy = policy
        self.config = config
        self.spec = spec
        self.stats = ServerStats()
        self._metadata = {**policy.metadata, **(metadata or {})}
        if spec is not None:
            self._metadata["observation_spec"] = spec.describe()
        self._metadata["auth"] = "api_key" if config.api_key else "none"
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="policy-infer")
        self._running_since: float | None = None  # monotonic start of the inference in the worker, if any
        self._active = 0
        self._server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The bound port (useful with port=0). Valid once the server is listening."""
        if self._server is None:
            raise RuntimeError("server is not listening yet")
        return self._server.sockets[0].getsockname()[1]

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def serve_forever(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:
            self._error = e
            self._ready.set()
            if self._thread is None:
                raise

    def start(self, timeout: float = 10.0) -> PolicyServer:
        self._thread = threading.Thread(target=self.serve_forever, name="policy-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"policy server did not start listening within {timeout} s")
        if self._error is not None:
            raise self._error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop listening and close every connection; safe to call more than once, from any thread."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed between the check and the call
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def stuck_for(self) -> float | None:
        """Seconds the inference worker has been in a call longer than `inference_timeout_s`, else None."""
        since, limit = self._running_since, self.config.inference_timeout_s
        if since is None or limit is None:
            return None
        elapsed = time.monotonic() - since
        return elapsed if elapsed > limit else None

    def __enter__(self) -> PolicyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        cfg = self.config
        try:
            async with serve(
                self._handle,
                cfg.host,
                cfg.port,
                compression=None,
                max_size=cfg.max_message_bytes,
                process_request=self._process_request,
                max_queue=cfg.max_queue,
                ping_interval=cfg.ping_interval_s,
                ping_timeout=cfg.ping_interval_s,
            ) as server:
                self._server = server
                host, port = server.sockets[0].getsockname()[:2]
                logger.info(
                    "policy server on ws://%s:%d (auth: %s, max message %.1f MiB, max clients %d)",
                    host,
                    port,
                    "api key" if cfg.api_key else "none",
                    cfg.max_message_bytes / 2**20,
                    cfg.max_clients,
                )
                self._ready.set()
                await self._stop.wait()
        finally:
            self._server = None

    # -- handshake -------------------------------------------------------------------------------------------
    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path.split("?")[0] == "/healthz":
            stuck = self.stuck_for
            if stuck is not None:
                return connection.respond(
                    http.HTTPStatus.SERVICE_UNAVAILABLE, f"inference worker stuck in one call for {stuck:.1f} s\n"
                )
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        if self.config.api_key is not None:
            given = request.headers.get("Authorization", "")
            expected = f"Api-Key {self.config.api_key}"
            if not hmac.compare_digest(given.encode(), expected.encode()):
                self.stats.rejected_handshakes += 1
                logger.warning("refused %s: missing or wrong API key", _peer(connection))
                return connection.respond(http.HTTPStatus.UNAUTHORIZED, "missing or wrong API key\n")
        if self._active >= self.config.max_clients:
            self.stats.rejected_handshakes += 1
            logger.warning("refused %s: %d clients already connected", _peer(connection), self._active)
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "too many clients\n")
        return None

    # -- one connection ----------------------------------------------------------------------------------------
    async def _handle(self, ws: ServerConnection) -> None:
        peer = _peer(ws)
        self._active += 1
        self.stats.connections += 1
        logger.info("client %s connected (%d active)", peer, self._active)
        loop = asyncio.get_running_loop()
        prev_total_ms: float | None = None
        try:
            await ws.send(codec.packb(self._metadata))
            async for message in ws:
                start = time.perf_counter()
                try:
                    obs = self._decode(message)
                    result = await self._infer(loop, obs)
                    infer_ms = (time.perf_counter() - start) * 1e3
                    timing = {"infer_ms": infer_ms}
                    if prev_total_ms is not None:
                        timing["prev_total_ms"] = prev_total_ms
                    reply = codec.packb({**result, "server_timing": timing})
                except _RefusedError as e:
                    self.stats.refused += 1
                    logger.info("refused a request from %s: %s", peer, e)
                    await ws.send(str(e))
                    continue
                except (InvalidObservationError, KeyError, ValueError) as e:  # the policy's own input checks
                    self.stats.refused += 1
                    logger.info("refused a request from %s: %s: %s", peer, type(e).__name__, e)
                    await ws.send(f"invalid observation: {type(e).__name__}: {e}")
                    continue
                except Exception as e:  # the policy failed: tell the client, keep serving
                    self.stats.refused += 1
                    logger.error("policy failed on a request from %s:\n%s", peer, traceback.format_exc())
                    await ws.send(f"policy error: {type(e).__name__}: {e}")
                    continue
                await ws.send(reply)
                self.stats.served += 1
                prev_total_ms = (time.perf_counter() - start) * 1e3
        except websockets.ConnectionClosed as e:
            logger.info("client %s: connection closed (%s)", peer, e)
        finally:
            self._active -= 1
            logger.info("client %s disconnected (%d active)", peer, self._active)

    async def _infer(self, loop: asyncio.AbstractEventLoop, obs: dict[str, Any]) -> dict[str, Any]:
        stuck = self.stuck_for
        if stuck is not None:
            raise _RefusedError(f"server unhealthy: the inference worker has been stuck in one call for {stuck:.1f} s")
        future = loop.run_in_executor(self._executor, self._timed_infer, obs)
        try:
            return await asyncio.wait_for(future, self.config.inference_timeout_s)
        except TimeoutError:
            self.stats.timeouts += 1
            raise _RefusedError(
                f"policy error: inference timed out after {self.config.inference_timeout_s} s"
            ) from None

    def _timed_infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        """In the worker thread: the policy call, with its start visible to `stuck_for`."""
        self._running_since = time.monotonic()
        try:
            return self.policy.infer(obs)
        finally:
            self._running_since = None

    def _decode(self, message: str | bytes) -> dict[str, Any]:
        if isinstance(message, str):
            raise _RefusedError("bad request: expected a binary msgpack frame, got a text frame")
        try:
            obs = codec.unpackb(message)
        except codec.CodecError as e:
            raise _RefusedError(f"bad request: {e}") from e
        if not isinstance(obs, dict):
            raise _RefusedError(f"bad request: expected a map of observation fields, got {type(obs).__name__}")
        if self.spec is not None:
            try:
                self.spec.check(obs)
            except InvalidObservationError as e:
                raise _RefusedError(f"invalid observation: {e}") from e
        return obs


class _RefusedError(Exception):
    """A request answered with an error frame (the reason is the message)."""


def _peer(connection: ServerConnection) -> str:
    try:
        host, port = connection.remote_address[:2]
        return f"{host}:{port}"
    except (TypeError, ValueError):
        return "?"

"""The service's HTTP connections: uvicorn's h11 protocol plus the limits a slow or hostile client needs and uvicorn
lacks.

- **Read timeout.** A request's headers and body must arrive within ``read_timeout_s`` of its start (the connection's
  opening, or the end of the previous answer on a kept-alive connection). Past it the client gets 408 and the
  connection is closed: a client sending a byte every few seconds holds a slot for that long at most. Waiting for
  the model is not reading: once the body is in, the clock stops.
- **Connection cap.** One connection past ``max_connections`` gets 503 with Retry-After and is closed at once. It is
  well above the upload slots (``max_uploads``, counted by the app), so /healthz and the page still answer when
  every upload slot is taken.
- **Bounded shutdown.** On SIGTERM uvicorn stops accepting and lets open requests finish; one still open after
  ``shutdown_timeout_s`` is dropped (503 if nothing was answered yet), so that an idle upload cannot keep the server
  up.

Refusals are ``{"error": "<one line>"}`` like the app's own. When the app is already handling the request, the
reason for dropping it is left in its scope under :data:`DROPPED` so that the app's one log line can say why.
"""
from __future__ import annotations

import asyncio
import http
import json
import logging
from typing import Callable

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from fashion2stage.app.serve.limits import Limits

log = logging.getLogger("fashion2stage.app.serve")

DROPPED = "fashion2stage.dropped"  # scope key: why the connection under a request was closed by the server


def json_response(status: int, message: str, retry_after: int | None = None) -> bytes:
    """A whole HTTP/1.1 response ``{"error": message}`` that closes the connection, as bytes for the socket."""
    body = json.dumps({"error": message}).encode()
    head = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}", "content-type: application/json",
            f"content-length: {len(body)}", "connection: close"]
    if retry_after is not None:
        head.append(f"retry-after: {retry_after}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def protocol_class(limits: Limits, retry_after: Callable[[], int]) -> type[H11Protocol]:
    """uvicorn's ``http`` protocol class with ``limits``' read timeout, connection cap and shutdown bound.
    ``retry_after()`` gives the seconds a refused client is told to wait (the batcher's estimate)."""

    class LimitedH11Protocol(H11Protocol):
        _read_timer: asyncio.TimerHandle | None = None
        _drop_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            if len(self.connections) > limits.max_connections:
                log.warning(f"{self._who()}: refused, {limits.max_connections} connections already open")
                self._close(503, f"server busy: {limits.max_connections} connections open", retry_after())
                return
            self._watch_reading()

        def handle_events(self) -> None:
            super().handle_events()
            self._watch_reading()

        def connection_lost(self, exc) -> None:
            for timer in (self._read_timer, self._drop_timer):
                if timer is not None:
                    timer.cancel()
            super().connection_lost(exc)

        def shutdown(self) -> None:
            super().shutdown()  # closes idle connections; a request in progress may finish ...
            if not self.transport.is_closing():  # ... within the bound
                self._drop_timer = self.loop.call_later(limits.shutdown_timeout_s, self._drop, "shutdown", 503,
                                                        "server shutting down")

        def _watch_reading(self) -> None:
            """Run the read clock while a request is awaited or arriving; stop it once its body is complete."""
            if self.transport is None or self.transport.is_closing():
                return
            theirs, ours = self.conn.their_state, self.conn.our_state
            reading = theirs is h11.SEND_BODY or (theirs is h11.IDLE and ours is h11.IDLE)
            if reading and self._read_timer is None:
                self._read_timer = self.loop.call_later(limits.read_timeout_s, self._read_timed_out)
            elif not reading and self._read_timer is not None:
                self._read_timer.cancel()
                self._read_timer = None

        def _read_timed_out(self) -> None:
            self._read_timer = None
            started = self.conn.their_state is not h11.IDLE or bool(self.conn.trailing_data[0])
            # the app logs a request it was handling; a connection that never sent a byte (a browser's
            # preconnection) is closed without a word
            if started and (self.cycle is None or self.cycle.response_complete):
                log.info(f"{self._who()}: no complete request within {limits.read_timeout_s:g} s: 408, closed")
            self._drop("timeout", 408, f"request not received within {limits.read_timeout_s:g} s")

        def _drop(self, why: str, status: int, message: str) -> None:
            """Close the connection; answer ``status`` unless an answer was started. The app, if it is handling a
            request here, sees the client disconnect and logs its one line."""
            if self.transport.is_closing():
                return
            cycle = self.cycle if self.cycle is not None and not self.cycle.response_complete else None
            if cycle is not None:
                cycle.scope[DROPPED] = why
                answered = cycle.response_started
                cycle.disconnected = True  # whatever the app sends from now on goes nowhere
            else:
                answered = False
            self._close(None if answered else status, message, None)

        def _close(self, status: int | None, message: str, retry: int | None) -> None:
            if status is not None:
                self.transport.write(json_response(status, message, retry))
            self.transport.close()

        def _who(self) -> str:
            return "%s:%d" % self.client if self.client else "a client"

    return LimitedH11Protocol

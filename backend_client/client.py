"""`BackendClient`: the backend's API as awaitable methods with typed results (replies.py),
retried when safe, timed out, and failing at once while the breaker is open (breaker.py)."""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import structlog

from backend_client.breaker import CircuitBreaker
from backend_client.replies import (
    AccountInfo,
    BackendError,
    BackendUnavailable,
    Bundle,
    CallOpened,
    CargoCheck,
    CircuitOpen,
)
from backend_client.sessions import LoginSessions
from formats.json_text import json_text

log = structlog.get_logger("backend_client")


# The longest wait for a TCP connection to the backend (as Asterisk waits for a FastAGI server):
# a host that drops packets must not hold a caller for the whole request timeout.
CONNECT_TIMEOUT_S = 2.0
# Connections to the backend at most (aiohttp's pool): further requests queue for one, up to
# QUEUE_WAIT_S, so that in a burst of calls a request's timeout counts only the backend's time.
CONNECTIONS = 100
QUEUE_WAIT_S = 30.0
# A number in a request's path (a call's id): requests are summed up by kind, not by call.
ID_IN_PATH = re.compile(r"/\d+(?=/|$)")
# Call openings on their way at once; those that come meanwhile wait and go together, up to
# OPENINGS_PER_REQUEST in a request (`POST /v1/calls/batch`): a burst of 1,000 callers makes a
# handful of requests, not 1,000. A lone opening goes at once, alone.
OPENINGS_AT_ONCE = 4
OPENINGS_PER_REQUEST = 100  # the API takes 200
# The breaker's failures at once: nothing listening, a connection reset. A timeout, to connect
# (a host that drops packets, or a backlog full in a burst) or to answer, counts only if nothing
# else is answered meanwhile (breaker.py).
UNREACHABLE = (
    aiohttp.ClientConnectorError,
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientOSError,
)


@dataclass
class BackendClient:
    base_url: str
    api_token: str
    timeout: float = 5.0
    retries: int = 1
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    # How long the answers took (seconds), the latest ones: for the shutdown summary and bench/.
    # Each answer's latency (s) and request ("POST /v1/calls/{id}/end"), the last 100,000.
    latencies: deque[tuple[float, str]] = field(
        default_factory=lambda: deque(maxlen=100_000), repr=False
    )
    _session: aiohttp.ClientSession | None = field(default=None, repr=False)
    connections: int = CONNECTIONS  # at most at once; more requests wait for one
    _connections: asyncio.Semaphore = field(init=False, repr=False)
    logins: LoginSessions = field(default_factory=LoginSessions, repr=False)

    pending: int = field(default=0, init=False)  # requests waiting for a connection or an answer
    # Openings waiting to go together, each with its caller's future; requests of them on the way.
    _openings: list[tuple[dict[str, Any], asyncio.Future[CallOpened]]] = field(
        default_factory=list, init=False, repr=False
    )
    _openings_sent: set[asyncio.Task[None]] = field(default_factory=set, init=False, repr=False)

    def __post_init__(self) -> None:
        self._connections = asyncio.Semaphore(self.connections)

    @property
    def congested(self) -> bool:
        """Half the connections' worth of requests (or openings) waiting: a burst of calls,
        where a new request waits behind the others."""
        return self.pending + len(self._openings) >= self.connections // 2

    async def __aenter__(self) -> BackendClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        # One session (one connection pool) for the whole FastAGI process, made on first use
        # inside the running loop.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                base_url=self.base_url.rstrip("/") + "/",
                json_serialize=json_text,  # a call's end: 1.7 µs, not json.dumps's 21 (timeit)
                connector=aiohttp.TCPConnector(limit=self.connections),
                headers={"Authorization": f"Bearer {self.api_token}"},
                timeout=aiohttp.ClientTimeout(
                    total=self.timeout, sock_connect=min(self.timeout, CONNECT_TIMEOUT_S)
                ),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        safe: bool = False,
    ) -> Any:
        attempts = 1 + (self.retries if safe else 0)
        for attempt in range(1, attempts + 1):
            try:
                self.pending += 1
                try:
                    status, body = await self._attempt(method, path, json, params, headers)
                finally:
                    self.pending -= 1
                if status >= 500:
                    raise BackendUnavailable(f"backend answered {status}")
            except CircuitOpen:
                raise  # no retry: the breaker decides when to try again
            except (TimeoutError, aiohttp.ClientError, BackendUnavailable, ValueError) as e:
                log.warning(
                    "backend_request_failed",
                    method=method,
                    path=path.split("?")[0],
                    attempt=attempt,
                    error=type(e).__name__,
                )
                if attempt == attempts:
                    raise BackendUnavailable(type(e).__name__) from e
                continue
            if status >= 400:
                error = (body or {}).get("error", {}) if isinstance(body, dict) else {}
                raise BackendError(
                    status,
                    error.get("code", "unknown"),
                    error.get("message", ""),
                    error.get("detail"),
                )
            return body
        raise AssertionError("unreachable")

    async def _attempt(
        self,
        method: str,
        path: str,
        json: Any,
        params: dict[str, str] | None,
        headers: dict[str, str] | None,
    ) -> tuple[int, Any]:
        """One request, its outcome told to the breaker: the status and the decoded body."""
        try:  # a free connection first: the timeout then counts the backend's time alone
            # asyncio.timeout, not wait_for: 3.11's wait_for can drop a cancellation (the
            # outbox's stop) when the semaphore is granted at the same moment.
            async with asyncio.timeout(QUEUE_WAIT_S):
                await self._connections.acquire()
        except TimeoutError:
            raise BackendUnavailable("no free connection to the backend") from None
        try:
            if not self.breaker.allow():
                raise CircuitOpen(f"backend down, next try in {self.breaker.retry_in():.1f} s")
            sent_at, started = self.breaker.now(), time.perf_counter()
            try:
                async with self.session.request(
                    method, path.lstrip("/"), json=json, params=params, headers=headers
                ) as resp:
                    body = await resp.json(content_type=None)
            except UNREACHABLE:
                self.breaker.failed()
                raise
            except TimeoutError:  # no connection or answer in time: down if nothing is answered
                self.breaker.timed_out(sent_at)
                raise
            except BaseException:
                self.breaker.abandoned()  # cancelled, or an answer we could not read
                raise
        finally:
            self._connections.release()
        request = f"{method} {ID_IN_PATH.sub('/{id}', path)}"
        self.latencies.append((time.perf_counter() - started, request))
        self.breaker.succeeded()
        return resp.status, body

    def latency_summary(self) -> dict[str, Any]:
        """Answers counted, their p50 / p99 latency in ms, and each request's p99."""
        if not self.latencies:
            return {"backend_answers": 0}
        by_request: dict[str, list[float]] = {}
        for latency, request in self.latencies:
            by_request.setdefault(request, []).append(latency)
        every = [latency for latency, _ in self.latencies]
        return {
            "backend_answers": len(every),
            "backend_p50_ms": _ms_at(every, 0.5),
            "backend_p99_ms": _ms_at(every, 0.99),
            "backend_p99_ms_by_request": {
                request: _ms_at(latencies, 0.99) for request, latencies in by_request.items()
            },
        }

    # --- calls ----------------------------------------------------------------------------

    async def open_call(
        self,
        uniqueid: str,
        hotline: str,
        caller_id: str | None,
        channel: str | None,
        language: str | None,
    ) -> CallOpened:
        """Open the call log; the answer carries what the first prompts need (the caller
        number's remembered language, the service's suspension). Sent with the openings
        waiting meanwhile, if any (OPENINGS_AT_ONCE)."""
        opening = {
            "uniqueid": uniqueid,
            "hotline": hotline,
            "caller_id": caller_id,
            "channel": channel,
            "language": language,
        }
        future = asyncio.get_running_loop().create_future()
        self._openings.append((opening, future))
        self._send_openings()
        return await future

    def _send_openings(self) -> None:
        while self._openings and len(self._openings_sent) < OPENINGS_AT_ONCE:
            batch = self._openings[:OPENINGS_PER_REQUEST]
            del self._openings[:OPENINGS_PER_REQUEST]
            task = asyncio.create_task(self._open_together(batch))
            self._openings_sent.add(task)
            task.add_done_callback(self._openings_sent.discard)
            task.add_done_callback(lambda _: self._send_openings())

    async def _open_together(
        self, batch: list[tuple[dict[str, Any], asyncio.Future[CallOpened]]]
    ) -> None:
        """One request for the openings of `batch`, each answer (or failure) to its future."""
        results: list[CallOpened | BaseException]
        try:
            if len(batch) == 1:
                results = [await self._open_call(batch[0][0])]
            else:
                try:
                    body = await self._request(
                        "POST",
                        "/v1/calls/batch",
                        json={"calls": [opening for opening, _ in batch]},
                        safe=True,  # the same uniqueid gives the same call
                    )
                    results = [CallOpened.from_json(answer) for answer in body["calls"]]
                    if len(results) != len(batch):  # a fault: no caller may wait for ever
                        raise ValueError(f"{len(results)} answers to {len(batch)} openings")
                except BackendError:  # refused whole for one opening's sake: each alone
                    results = await asyncio.gather(
                        *(self._open_call(opening) for opening, _ in batch), return_exceptions=True
                    )
        except Exception as e:  # the backend unavailable: every call's log goes to the spool
            results = [e] * len(batch)
        except asyncio.CancelledError:  # the loop is shutting down: no caller waits for ever
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():  # its caller stopped waiting (the call was cut off)
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def _open_call(self, opening: dict[str, Any]) -> CallOpened:
        body = await self._request(
            "POST",
            "/v1/calls",
            json=opening,
            safe=True,  # the same uniqueid gives the same call
        )
        return CallOpened.from_json(body)

    async def add_events(self, call_id: int, events: list[dict[str, Any]]) -> None:
        await self._request("POST", f"/v1/calls/{call_id}/events", json={"events": events})

    async def end_call(
        self,
        call_id: int,
        outcome: str,
        last_stage: str,
        account: str | None,
        language: str | None = None,
        events: list[dict[str, Any]] | None = None,
    ) -> None:
        """End the call log; `events`, its last events, are stored with the end."""
        self.logins.end_call(call_id)
        ending: dict[str, Any] = {"outcome": outcome, "last_stage": last_stage, "account": account}
        if language is not None:
            ending["language"] = language
        if events:
            ending["events"] = events
        await self._request(
            "POST",
            f"/v1/calls/{call_id}/end",
            json=ending,
            headers={"Prefer": "return=minimal"},  # 204: the call is not read back
            safe=True,  # the first end wins, and events are stored once
        )

    # --- login and cargo --------------------------------------------------------------------

    async def login(
        self,
        account: str,
        password: str,
        token_code: str,
        call_id: int | None,
        caller_id: str | None,
    ) -> AccountInfo:
        # Not retried: a retry would count twice toward the lockout.
        body = await self._request(
            "POST",
            "/v1/sessions",
            json={
                "account": account,
                "password": password,
                "token_code": token_code,
                "call_id": call_id,
                "caller_id": caller_id,
            },
        )
        self.logins.keep(account, call_id, body)
        a = body["account"]
        return AccountInfo(
            a["number"],
            a["type"],
            bool(a["needs_activation"]),
            a.get("mobile"),
            bool(a.get("mobile_registered", a.get("mobile") is not None)),
            bool(a.get("terms_accepted", not a["needs_activation"])),
        )

    # --- first call: mobile and terms -------------------------------------------------------

    async def register_mobile(self, account: str, mobile: str, call_id: int | None) -> int:
        """Send an SMS code to `mobile`; how many more codes may be sent in this call."""
        body = await self._request(
            "POST", f"/v1/accounts/{account}/mobile", json={"mobile": mobile, "call_id": call_id}
        )
        return int(body["codes_left"])

    async def verify_mobile(self, account: str, code: str, call_id: int | None) -> str:
        body = await self._request(
            "POST",
            f"/v1/accounts/{account}/mobile/verify",
            json={"code": code, "call_id": call_id},
        )
        return str(body["mobile"])

    async def terms_version(self) -> str:
        return str((await self._request("GET", "/v1/terms", safe=True))["version"])

    async def accept_terms(self, account: str, version: str, call_id: int | None) -> None:
        await self._request(
            "POST",
            f"/v1/accounts/{account}/terms",
            json={"version": version, "call_id": call_id},
            safe=True,  # accepting twice is accepting once
        )

    async def recent_vehicles(self, account: str) -> list[str]:
        """The account's recent vehicles: its login answered them (no request)."""
        return self.logins.recent_vehicles(account)

    async def check_cargo(self, number: str) -> CargoCheck:
        body = await self._request("GET", f"/v1/cargo/{number}", safe=True)
        return CargoCheck(body["number"], body["kind"], list(body["ccrns"]))

    async def bundle(
        self,
        account: str,
        vehicle_mark: str,
        numbers: list[str],
        call_id: int | None,
        idempotency_key: str,
    ) -> Bundle:
        body = await self._request(
            "POST",
            "/v1/bundles",
            json={
                "account": account,
                "vehicle_mark": vehicle_mark,
                "numbers": numbers,
                "call_id": call_id,
            },
            headers={"Idempotency-Key": idempotency_key} | self.logins.header(account, call_id),
            safe=True,  # the idempotency key makes a retry harmless
        )
        self.logins.bundled(account, vehicle_mark)
        return Bundle.from_json(body)

    async def unbundle(
        self,
        account: str,
        vehicle_mark: str,
        ccrn: str | None,
        call_id: int | None,
        idempotency_key: str,
    ) -> list[str]:
        """Cancel one CCRN (or all, with None) bundled to the vehicle; the CCRNs cancelled."""
        body = await self._request(
            "POST",
            "/v1/unbundle",
            json={
                "account": account,
                "vehicle_mark": vehicle_mark,
                "ccrn": ccrn,
                "call_id": call_id,
            },
            headers={"Idempotency-Key": idempotency_key} | self.logins.header(account, call_id),
            safe=True,
        )
        return list(body["cancelled"])

    async def bundles(self, account: str, vehicle_mark: str | None = None) -> list[Bundle]:
        params = {"account": account}
        if vehicle_mark:
            params["vehicle_mark"] = vehicle_mark
        headers = self.logins.header(account, any_call=True)
        body = await self._request("GET", "/v1/bundles", params=params, headers=headers, safe=True)
        return [Bundle.from_json(b) for b in body["bundles"]]


def _ms_at(latencies: list[float], quantile: float) -> float:
    """The latency (ms) at `quantile` (the value at that rank, as ordered)."""
    ordered = sorted(latencies)
    return round(ordered[min(len(ordered) - 1, int(quantile * len(ordered)))] * 1000, 2)

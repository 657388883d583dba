"""HTTP record store: another environment's `syncd serve` API, through httpx.

A sync machine never needs database credentials: it holds one bearer token per environment.

- Pooling and timeouts: one httpx.AsyncClient per store, keep-alive connections, a timeout per
  request (`HttpOptions.timeout`, the environment's `timeout`).
- Retries: this store is the one layer that retries HTTP requests (it alone knows
  Retry-After, and it retries one request of a split call, not the calls before it).
  Connection errors, timeouts, dropped connections, 429 and 5xx are retried with exponential
  backoff and jitter, waiting what `Retry-After` asks when the server says; no other 4xx is
  ever retried. Each retry is one warning line on stderr (logger `syncd.http`), and `close()`
  sums them up. Each write request gets one `Idempotency-Key`, sent by all its retries, so a
  write retried after a lost answer gets the first attempt's answer (created stays created).
- Limits: the server's page size and body limit (from GET /schema) split large calls: key
  lookups into chunks sent concurrently (at most `concurrency` requests in flight), writes
  into chunks sent in order (rows of an entry may reference earlier rows).
- Errors are mapped here, at the edge: retries exhausted → RetriesExhausted (permanent, so
  the applier does not retry the request again); another 4xx → PermanentError; while
  connecting (describe), a bad URL or a missing, wrong or read-only token → InputError,
  before anything is written.
"""
from __future__ import annotations

import email.utils
import logging
import random
import sys
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from typing import Any, Awaitable, Callable, Iterator, Sequence, TypeVar, cast

import anyio
import httpx
import msgspec

from .. import wire
from ..errors import InputError, PermanentError, StoreError
from ..filters import Filter
from ..retry import ATTEMPTS, RetriesExhausted
from ..schema import Column, Entity, TableInfo
from ..tasks import task_group
from .base import Patch, Row

log = logging.getLogger("syncd.http")
T = TypeVar("T")
S = TypeVar("S")

_encode = msgspec.json.Encoder().encode
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
# before GET /schema tells the server's own limits: small enough for any server
_CAUTIOUS = wire.Limits(max_body_bytes=1024 * 1024, max_page=1000)


@dataclass(frozen=True)
class HttpOptions:
    timeout: float = 30.0  # seconds a request may take (to connect, send, or wait for a reply)
    attempts: int = ATTEMPTS  # tries per request, the first one included
    backoff: float = 0.1  # seconds before the first retry; doubled per retry, ±50% jitter
    max_backoff: float = 5.0
    max_retry_after: float = 60.0  # the longest Retry-After honoured
    concurrency: int = 4  # requests in flight at once


class HttpStore:
    def __init__(self, name: str, url: str, token: str, *, readonly: bool,
                 options: HttpOptions = HttpOptions()) -> None:
        self.name = name
        self.url = url
        self.retries: Counter[str] = Counter()  # problem → retries it caused
        self._readonly = readonly
        self._options = options
        self._limits: wire.Limits | None = None
        self._limiter = anyio.CapacityLimiter(options.concurrency)
        self._client = httpx.AsyncClient(
            base_url=url, timeout=options.timeout, follow_redirects=False,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            limits=httpx.Limits(max_connections=options.concurrency,
                                max_keepalive_connections=options.concurrency))

    # -- the RecordStore port -------------------------------------------------------------

    async def describe(self) -> list[TableInfo]:
        answer = await self._call(wire.SCHEMA, None, None, wire.SchemaResponse, connecting=True)
        if not self._readonly and answer.access != wire.READ_WRITE:
            raise InputError(f"environment '{self.name}': the token is {answer.access}; "
                             "writing needs a read-write token")
        self._limits = answer.limits
        return [_table_info(t) for t in answer.tables]

    async def select_page(
        self, entity: Entity, filters: Sequence[Filter], after: Any | None, limit: int,
        order_by: str | None = None,
    ) -> list[Row]:
        """Pages of the server's size until `limit` rows or the end."""
        specs = [wire.filter_spec(f) for f in filters]
        page_size = (await self._server_limits()).max_page
        key_at = entity.index(entity.key)
        order_at = entity.index(order_by) if order_by is not None else None
        rows: list[Row] = []
        while len(rows) < limit:
            want = min(limit - len(rows), page_size)
            request = wire.SelectRequest(columns=list(entity.columns), filters=specs,
                                         after=_wire_after(after), limit=want, order_by=order_by)
            page = await self._rows(wire.SELECT, entity, request)
            rows += page
            if len(page) < want:
                break
            last = page[-1]
            cursor = last[key_at] if order_at is None else (last[order_at], last[key_at])
            # A NULL key or an unmoved cursor would ask for the same page for ever (a server
            # that pages over NULL keys did). Only equality is checked: the order is the
            # server's collation, which the client does not know.
            if last[key_at] is None or cursor == after:
                raise PermanentError(f"{self.name}: {entity.name} select: the server's paging "
                                     f"did not move the cursor past {after!r}; stopped")
            after = cursor
        return rows

    async def select_all(self, entity: Entity, filters: Sequence[Filter]) -> list[Row]:
        """Paged by key; an `in` list longer than a page is split and the parts joined."""
        limits = await self._server_limits()
        listed = [i for i, f in enumerate(filters) if f.op == "in"]
        longest = max(listed, key=lambda i: len(filters[i].value), default=None)
        if longest is None or len(filters[longest].value) <= limits.max_page:
            return await self.select_page(entity, filters, None, sys.maxsize)
        parts = [[*filters[:longest], Filter(filters[longest].field, "in", list(values)),
                  *filters[longest + 1:]]
                 for values in _chunks(filters[longest].value, limits.max_page)]
        found = await self._gather([partial(self.select_all, entity, part) for part in parts])
        key_at = entity.index(entity.key)
        return list({row[key_at]: row for rows in found for row in rows}.values())

    async def fetch(self, entity: Entity, keys: Sequence[Any]) -> list[Row]:
        columns = list(entity.columns)
        calls = [lambda body=body: self._rows(wire.FETCH, entity, body=body)
                 for body in await self._bodies(
                     keys, lambda part: wire.FetchRequest(columns=columns, keys=list(part)))]
        parts = await self._gather(calls)
        if len(parts) == 1:
            return parts[0]  # the server answers in key order
        key_at = entity.index(entity.key)
        return _sorted_by_key([row for part in parts for row in part], key_at)

    async def existing_keys(self, entity: Entity, keys: Sequence[Any]) -> set[Any]:
        calls = [lambda body=body: self._call(wire.EXISTING, entity, body, wire.KeysResponse)
                 for body in await self._bodies(
                     keys, lambda part: wire.KeysRequest(keys=list(part)))]
        return {key for answer in await self._gather(calls) for key in answer.keys}

    async def match_natural(
        self, entity: Entity, values: Sequence[tuple[Any, ...]]
    ) -> dict[tuple[Any, ...], Any]:
        columns = list(entity.natural_key)
        calls = [lambda body=body: self._call(wire.MATCH, entity, body, wire.MatchResponse)
                 for body in await self._bodies(values, lambda part: wire.MatchRequest(
                     columns=columns, values=[list(v) for v in wire.wrap_blobs(part)]))]
        return {tuple(wire.unwrap_value(v) for v in m.values): m.key
                for answer in await self._gather(calls) for m in answer.matches}

    async def create(self, entity: Entity, columns: Sequence[str],
                     rows: Sequence[Sequence[Any]]) -> list[bool]:
        """One request, so one server transaction, unless the rows exceed the server's limits."""
        names = list(columns)
        flags: list[bool] = []
        for body in await self._bodies(rows, lambda part: wire.CreateRequest(
                columns=names, rows=list(wire.wrap_blobs(part)))):  # type: ignore[arg-type]
            answer = await self._call(wire.CREATE, entity, body, wire.CreateResponse, write=True)
            flags += [outcome == "created" for outcome in answer.outcomes]
        return flags

    async def update(self, entity: Entity, patches: Sequence[Patch]) -> list[bool]:
        flags: list[bool] = []
        for body in await self._bodies(patches, lambda part: wire.UpdateRequest(patches=[
                wire.Patch(key=key, fields={c: wire.wrap_value(v) for c, v in fields.items()})
                for key, fields in part])):
            answer = await self._call(wire.UPDATE, entity, body, wire.UpdateResponse, write=True)
            flags += [outcome == "updated" for outcome in answer.outcomes]
        return flags

    async def delete(self, entity: Entity, keys: Sequence[Any]) -> list[bool]:
        """Delete-if-present (for move, which the port does not offer yet)."""
        flags: list[bool] = []
        for body in await self._bodies(keys, lambda part: wire.KeysRequest(keys=list(part))):
            answer = await self._call(wire.DELETE, entity, body, wire.DeleteResponse, write=True)
            flags += [outcome == "deleted" for outcome in answer.outcomes]
        return flags

    async def close(self) -> None:
        await self._client.aclose()
        if self.retries:
            counts = ", ".join(f"{problem}: {n}" for problem, n in sorted(self.retries.items()))
            log.warning("%s: %d HTTP requests retried (%s)", self.name, self.retries.total(), counts)

    # -- requests -----------------------------------------------------------------------------

    async def _server_limits(self) -> wire.Limits:
        if self._limits is None:
            await self.describe()
        return self._limits or _CAUTIOUS

    async def _bodies(self, items: Sequence[S],
                      make: Callable[[Sequence[S]], msgspec.Struct]) -> list[bytes]:
        """Encoded requests over chunks of `items` that fit the server's page and body limits."""
        limits = await self._server_limits()
        return [fitted for chunk in _chunks(items, limits.max_page)
                for fitted in _fit(chunk, make, limits.max_body_bytes)]

    async def _rows(self, endpoint: wire.Endpoint, entity: Entity,
                    request: msgspec.Struct | None = None, *, body: bytes | None = None) -> list[Row]:
        raw = await self._send(endpoint, entity.name, body if body is not None else _encode(request))
        answer = _decode(raw, wire.RowsResponse, self.name, endpoint)
        if tuple(answer.columns) != entity.columns:
            raise PermanentError(f"{self.name}: {endpoint.name} answered columns {answer.columns}, "
                                 f"not {list(entity.columns)}")
        return wire.unwrap_blobs(answer.rows, raw)

    async def _call(self, endpoint: wire.Endpoint, entity: Entity | None, body: bytes | None,
                    answer: type[T], *, write: bool = False, connecting: bool = False) -> T:
        if write and self._readonly:  # a source is never written, whatever its token allows
            raise PermanentError(f"environment '{self.name}' is open read-only")
        # one key per request, made before its first try: every retry in _send sends it again
        key = str(uuid.uuid4()) if write else None
        raw = await self._send(endpoint, entity.name if entity else None, body,
                               idempotency_key=key, connecting=connecting)
        return _decode(raw, answer, self.name, endpoint)

    async def _send(self, endpoint: wire.Endpoint, entity: str | None, body: bytes | None, *,
                    idempotency_key: str | None = None, connecting: bool = False) -> bytes:
        url = endpoint.url(entity)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        attempts = self._options.attempts
        for attempt in range(1, attempts + 1):
            try:
                async with self._limiter:
                    response = await self._client.request(endpoint.method, url, content=body,
                                                          headers=headers)
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                problem, wait = _transport_problem(exc), None
                cause: Exception = exc
            else:
                if response.status_code < 300:
                    return response.content
                if response.status_code not in _RETRY_STATUS:
                    raise self._refused(endpoint, url, response, connecting)
                problem = f"HTTP {response.status_code}"
                wait = retry_after(response.headers.get("Retry-After"), self._options.max_retry_after)
                cause = httpx.HTTPStatusError(problem, request=response.request, response=response)
            if attempt == attempts:  # permanent now: retrying it again would multiply requests
                raise RetriesExhausted(f"{self.name}: {endpoint.method} {url}: {problem} "
                                       f"(gave up after {attempts} attempts)") from cause
            delay = wait if wait is not None else self._backoff(attempt)
            self.retries[problem] += 1
            log.warning("%s: %s %s: %s; retry %d of %d in %.2fs%s", self.name, endpoint.method, url,
                        problem, attempt, attempts - 1, delay, " (Retry-After)" if wait is not None else "")
            await anyio.sleep(delay)
        raise AssertionError("unreachable")

    def _backoff(self, attempt: int) -> float:
        base = min(self._options.max_backoff, self._options.backoff * 2.0 ** (attempt - 1))
        return base * random.uniform(0.5, 1.5)  # jitter: retrying clients do not move in step

    def _refused(self, endpoint: wire.Endpoint, url: str, response: httpx.Response,
                 connecting: bool) -> StoreError | InputError:
        status, message = response.status_code, _error_message(response)
        if status in (401, 403):
            text = f"environment '{self.name}': the token was rejected by {self.url} ({status}: {message})"
        else:
            text = f"environment '{self.name}': {endpoint.method} {url}: HTTP {status}: {message}"
        if connecting:  # a wrong URL or token: nothing has been written, fix the input
            return InputError(text)
        return PermanentError(text)

    async def _gather(self, calls: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
        """Run calls concurrently (the limiter bounds requests in flight); results in order."""
        if len(calls) == 1:
            return [await calls[0]()]
        results: list[Any] = [None] * len(calls)

        async def one(i: int) -> None:
            results[i] = await calls[i]()

        async with task_group() as tasks:
            for i in range(len(calls)):
                tasks.start_soon(one, i)
        return results


# ---------------------------------------------------------------------------- helpers

def retry_after(value: str | None, cap: float) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP date), at most `cap`."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), cap)


def _transport_problem(exc: Exception) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "connection refused or unreachable"
    return "connection dropped"


_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


def _decode(raw: bytes, answer: type[T], name: str, endpoint: wire.Endpoint) -> T:
    decoder = _decoders.get(answer) or _decoders.setdefault(answer, msgspec.json.Decoder(answer))
    try:
        return cast(T, decoder.decode(raw))
    except msgspec.DecodeError as exc:
        raise PermanentError(f"{name}: unexpected answer to {endpoint.name}: {exc}") from exc


def _error_message(response: httpx.Response) -> str:
    try:
        return msgspec.json.decode(response.content, type=wire.ErrorBody).message
    except msgspec.DecodeError:
        return response.text[:200].strip() or response.reason_phrase


def _wire_after(after: Any) -> Any:
    if isinstance(after, tuple):  # (order_by value, key)
        return [wire.wrap_value(v) for v in after]
    return wire.wrap_value(after)


def _chunks(items: Sequence[S], size: int) -> Iterator[Sequence[S]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _fit(items: Sequence[S], make: Callable[[Sequence[S]], msgspec.Struct],
         limit: int) -> Iterator[bytes]:
    """Halve a chunk until its body fits (rows vary in size; most chunks fit at once)."""
    body = _encode(make(items))
    if len(body) <= limit or len(items) <= 1:  # one item too large: the server says 413
        yield body
        return
    half = len(items) // 2
    yield from _fit(items[:half], make, limit)
    yield from _fit(items[half:], make, limit)


def _sorted_by_key(rows: list[Row], key_at: int) -> list[Row]:
    try:
        return sorted(rows, key=lambda r: r[key_at])
    except TypeError:  # ints and strings: SQLite's order (numbers first)
        return sorted(rows, key=lambda r: (isinstance(r[key_at], str), r[key_at]))


def _table_info(table: wire.Table) -> TableInfo:
    return TableInfo(
        name=table.name,
        columns=tuple(Column(c.name, c.type, c.notnull, c.is_json) for c in table.columns),
        primary_key=tuple(table.primary_key),
        foreign_keys=tuple((f.column, f.table, f.other_column) for f in table.foreign_keys))

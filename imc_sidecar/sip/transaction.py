"""Non-INVITE transactions (RFC 3261 §17.1.2, §17.2.2) as table-driven state machines.

Each machine is a table `(state, event) -> (action, next state)`; the code below only
carries out actions.  Every (state, event) pair is in its table, so a timer that fires
after its transaction moved on is just an event the table ignores: that is how the
timers kept in a heap are cancelled (lazy deletion); see `TransactionLayer` for the rest.

The layer never sends anything itself: it queues `Transmit`s for the caller to drain
and returns `RequestCompleted` events.  Time is always passed in.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "CLIENT_TABLE",
    "SERVER_TABLE",
    "Address",
    "ClientAction",
    "ClientEvent",
    "ClientTransaction",
    "Peer",
    "RequestCompleted",
    "ServerAction",
    "ServerEvent",
    "ServerKey",
    "ServerTransaction",
    "State",
    "Timers",
    "TransactionLayer",
    "Transmit",
]

Address = tuple[str, int]
ServerKey = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Peer:
    transport: str  # "udp" or "tcp"
    address: Address  # (host, port); for tcp the remote address of the connection


@dataclass(slots=True)
class Transmit:
    """Bytes to send.  Read-only by convention: not frozen, because a frozen dataclass
    costs three times as much to make and one is made for every message sent."""

    data: bytes
    peer: Peer  # where to send; for outgoing requests host may be a DNS name


@dataclass(slots=True)
class RequestCompleted:
    """A client transaction we started got its final answer (or failed).

    Read-only by convention (not frozen, for speed: see Transmit)."""

    context: object  # whatever was given to send_many
    status: int  # final status; 408 on Timer F, 503 on transport error
    reason: str


@dataclass(frozen=True, slots=True)
class Timers:
    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0


class State(IntEnum):
    TRYING = 0
    PROCEEDING = 1
    COMPLETED = 2
    TERMINATED = 3


# --- server machine (RFC 3261 §17.2.2) -----------------------------------------------------


class ServerEvent(IntEnum):
    REQUEST = 0  # the request arrived again (a retransmission)
    SEND_PROVISIONAL = 1  # the application replies 1xx
    SEND_FINAL = 2  # the application replies 200-699
    TIMER_J = 3


class ServerAction(IntEnum):
    IGNORE = 0  # absorbed: nothing to do
    SEND = 1  # send the response the application gave
    SEND_FINAL = 2  # send it, remember it, start Timer J
    RESEND = 3  # send the last response again
    DESTROY = 4


_S, _SE, _SA = State, ServerEvent, ServerAction
SERVER_TABLE: dict[tuple[State, ServerEvent], tuple[ServerAction, State]] = {
    (_S.TRYING, _SE.REQUEST): (_SA.IGNORE, _S.TRYING),
    (_S.TRYING, _SE.SEND_PROVISIONAL): (_SA.SEND, _S.PROCEEDING),
    (_S.TRYING, _SE.SEND_FINAL): (_SA.SEND_FINAL, _S.COMPLETED),
    (_S.TRYING, _SE.TIMER_J): (_SA.IGNORE, _S.TRYING),
    (_S.PROCEEDING, _SE.REQUEST): (_SA.RESEND, _S.PROCEEDING),
    (_S.PROCEEDING, _SE.SEND_PROVISIONAL): (_SA.SEND, _S.PROCEEDING),
    (_S.PROCEEDING, _SE.SEND_FINAL): (_SA.SEND_FINAL, _S.COMPLETED),
    (_S.PROCEEDING, _SE.TIMER_J): (_SA.IGNORE, _S.PROCEEDING),
    (_S.COMPLETED, _SE.REQUEST): (_SA.RESEND, _S.COMPLETED),
    # §17.2.2: further responses from the application are discarded once Completed
    (_S.COMPLETED, _SE.SEND_PROVISIONAL): (_SA.IGNORE, _S.COMPLETED),
    (_S.COMPLETED, _SE.SEND_FINAL): (_SA.IGNORE, _S.COMPLETED),
    (_S.COMPLETED, _SE.TIMER_J): (_SA.DESTROY, _S.TERMINATED),
    (_S.TERMINATED, _SE.REQUEST): (_SA.IGNORE, _S.TERMINATED),
    (_S.TERMINATED, _SE.SEND_PROVISIONAL): (_SA.IGNORE, _S.TERMINATED),
    (_S.TERMINATED, _SE.SEND_FINAL): (_SA.IGNORE, _S.TERMINATED),
    (_S.TERMINATED, _SE.TIMER_J): (_SA.IGNORE, _S.TERMINATED),
}


# --- client machine (RFC 3261 §17.1.2) -----------------------------------------------------


class ClientEvent(IntEnum):
    TIMER_E = 0
    TIMER_F = 1
    TIMER_K = 2
    PROVISIONAL = 3  # a 1xx arrived
    FINAL = 4  # a 200-699 arrived
    TRANSPORT_ERROR = 5


class ClientAction(IntEnum):
    IGNORE = 0
    RETRANSMIT = 1  # send the request again and restart Timer E
    PROCEED = 2  # nothing to send; Timer E continues, now capped at T2
    COMPLETE = 3  # report the final response, start Timer K
    TIMEOUT = 4  # report 408
    FAIL = 5  # report 503
    DESTROY = 6


_C, _CE, _CA = State, ClientEvent, ClientAction
CLIENT_TABLE: dict[tuple[State, ClientEvent], tuple[ClientAction, State]] = {
    (_C.TRYING, _CE.TIMER_E): (_CA.RETRANSMIT, _C.TRYING),
    (_C.TRYING, _CE.TIMER_F): (_CA.TIMEOUT, _C.TERMINATED),
    (_C.TRYING, _CE.TIMER_K): (_CA.IGNORE, _C.TRYING),
    (_C.TRYING, _CE.PROVISIONAL): (_CA.PROCEED, _C.PROCEEDING),
    (_C.TRYING, _CE.FINAL): (_CA.COMPLETE, _C.COMPLETED),
    (_C.TRYING, _CE.TRANSPORT_ERROR): (_CA.FAIL, _C.TERMINATED),
    (_C.PROCEEDING, _CE.TIMER_E): (_CA.RETRANSMIT, _C.PROCEEDING),
    (_C.PROCEEDING, _CE.TIMER_F): (_CA.TIMEOUT, _C.TERMINATED),
    (_C.PROCEEDING, _CE.TIMER_K): (_CA.IGNORE, _C.PROCEEDING),
    (_C.PROCEEDING, _CE.PROVISIONAL): (_CA.IGNORE, _C.PROCEEDING),
    (_C.PROCEEDING, _CE.FINAL): (_CA.COMPLETE, _C.COMPLETED),
    (_C.PROCEEDING, _CE.TRANSPORT_ERROR): (_CA.FAIL, _C.TERMINATED),
    # Completed only absorbs retransmitted responses until Timer K.
    (_C.COMPLETED, _CE.TIMER_E): (_CA.IGNORE, _C.COMPLETED),
    (_C.COMPLETED, _CE.TIMER_F): (_CA.IGNORE, _C.COMPLETED),
    (_C.COMPLETED, _CE.TIMER_K): (_CA.DESTROY, _C.TERMINATED),
    (_C.COMPLETED, _CE.PROVISIONAL): (_CA.IGNORE, _C.COMPLETED),
    (_C.COMPLETED, _CE.FINAL): (_CA.IGNORE, _C.COMPLETED),
    (_C.COMPLETED, _CE.TRANSPORT_ERROR): (_CA.IGNORE, _C.COMPLETED),
    (_C.TERMINATED, _CE.TIMER_E): (_CA.IGNORE, _C.TERMINATED),
    (_C.TERMINATED, _CE.TIMER_F): (_CA.IGNORE, _C.TERMINATED),
    (_C.TERMINATED, _CE.TIMER_K): (_CA.IGNORE, _C.TERMINATED),
    (_C.TERMINATED, _CE.PROVISIONAL): (_CA.IGNORE, _C.TERMINATED),
    (_C.TERMINATED, _CE.FINAL): (_CA.IGNORE, _C.TERMINATED),
    (_C.TERMINATED, _CE.TRANSPORT_ERROR): (_CA.IGNORE, _C.TERMINATED),
}


@dataclass(slots=True, eq=False)
class ServerTransaction:
    key: ServerKey
    peer: Peer  # where responses go
    reliable: bool
    state: State = State.TRYING
    last_response: bytes | None = None


@dataclass(slots=True, eq=False)
class ClientTransaction:
    branch: str
    method: str
    data: bytes  # the request, for retransmissions; dropped once completed
    peer: Peer
    reliable: bool
    context: object
    interval: float  # current Timer E interval
    state: State = State.TRYING


# Heap entry: (deadline, tie-breaker, event, transaction).  The transaction's state
# decides whether the entry is still live (see module docstring).
_Entry = tuple[float, int, ClientEvent, ClientTransaction]


class TransactionLayer:
    """All server and client transactions and their timers.

    Most timers run a fixed time after the moment they are set (Timer F = 64*T1 after
    the request, the first Timer E = T1 after it, Timer K = T4 after the final response,
    Timer J = 64*T1 after ours), so each kind is a first-in first-out queue: setting one
    is an append, and a fan-out of thousands of requests costs no heap work.  Only
    Timer E after its first firing (doubling intervals) lives in a heap.  As with the
    heap, a timer whose transaction moved on stays queued until it comes up (lazy
    deletion); Timer F's queue, which would otherwise hold every request of the last
    64*T1 seconds, is compacted when such entries dominate it.

    Time never runs backwards here: a `now` earlier than one already seen schedules as
    the latest seen (the edge passes a monotonic clock, so this only matters in tests).
    """

    def __init__(self, timers: Timers | None = None) -> None:
        self.timers = timers or Timers()
        self.clients: dict[str, ClientTransaction] = {}  # by branch
        self.servers: dict[ServerKey, ServerTransaction] = {}
        self._heap: list[_Entry] = []  # Timer E after its first firing
        self._tie = itertools.count()
        # Client timers that act (live while the transaction is Trying or Proceeding).
        self._timer_f: deque[tuple[float, ClientTransaction]] = deque()
        self._first_e: deque[tuple[float, ClientTransaction]] = deque()  # unreliable only
        # Timer K (client, UDP) and J (server, UDP) only forget a finished transaction,
        # and nothing else ends one in Completed: always live.
        self._timer_k: deque[tuple[float, ClientTransaction]] = deque()
        self._timer_j: deque[tuple[float, ServerTransaction]] = deque()
        self._clock = float("-inf")
        self._out: list[Transmit] = []
        self.in_flight = 0  # client transactions not yet answered

    def _now(self, now: float) -> float:
        if now > self._clock:
            self._clock = now
        return self._clock

    # --- output ---------------------------------------------------------------------------

    def queue(self, transmit: Transmit) -> None:
        """Send something outside any transaction (a stateless reply)."""
        self._out.append(transmit)

    def transmits(self) -> list[Transmit]:
        out, self._out = self._out, []
        return out

    # --- timers ---------------------------------------------------------------------------

    def _push(self, deadline: float, txn: ClientTransaction) -> None:
        """A Timer E after the first one (intervals double, so these need the heap)."""
        heap = self._heap
        heapq.heappush(heap, (deadline, next(self._tie), ClientEvent.TIMER_E, txn))
        # Cancelled timers stay in the heap until due; rebuild (in place: handle_timer
        # holds the list) when they dominate, so memory follows the live transactions.
        if len(heap) > 4096 and len(heap) > 4 * self.in_flight:
            heap[:] = [e for e in heap if self._live(e)]
            heapq.heapify(heap)

    @staticmethod
    def _live(entry: _Entry) -> bool:
        _, _, event, txn = entry
        return CLIENT_TABLE[(txn.state, event)][0] is not ClientAction.IGNORE

    def _compact_timer_f(self) -> None:
        timer_f = self._timer_f
        live = [entry for entry in timer_f if entry[1].state < State.COMPLETED]
        timer_f.clear()
        timer_f.extend(live)

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and not self._live(heap[0]):
            heapq.heappop(heap)
        best = heap[0][0] if heap else None
        for queue in (self._timer_f, self._first_e):
            while queue and queue[0][1].state >= State.COMPLETED:
                queue.popleft()
            if queue and (best is None or queue[0][0] < best):
                best = queue[0][0]
        for fifo in (self._timer_k, self._timer_j):
            if fifo and (best is None or fifo[0][0] < best):
                best = fifo[0][0]
        return best

    def handle_timer(self, now: float) -> list[RequestCompleted]:
        self._now(now)
        done: list[RequestCompleted] = []
        # Timers K and J only forget a finished transaction: their order does not matter.
        timer_k = self._timer_k
        while timer_k and timer_k[0][0] <= now:
            self._client_step(timer_k.popleft()[1], ClientEvent.TIMER_K, now)
        timer_j = self._timer_j
        while timer_j and timer_j[0][0] <= now:
            self._server_step(timer_j.popleft()[1], ServerEvent.TIMER_J, now)
        # Timers E and F act, so they fire strictly in deadline order (ties: first set).
        heap, first_e, timer_f = self._heap, self._first_e, self._timer_f
        completed = State.COMPLETED
        while True:
            while first_e and first_e[0][1].state >= completed:
                first_e.popleft()
            while timer_f and timer_f[0][1].state >= completed:
                timer_f.popleft()
            while heap and not self._live(heap[0]):
                heapq.heappop(heap)
            queue: deque[tuple[float, ClientTransaction]] | None = None
            event = ClientEvent.TIMER_E
            at = now
            if first_e and first_e[0][0] <= at:
                queue, at = first_e, first_e[0][0]
            if timer_f and timer_f[0][0] <= at and (queue is None or timer_f[0][0] < at):
                queue, at, event = timer_f, timer_f[0][0], ClientEvent.TIMER_F
            if heap and heap[0][0] <= at and (queue is None or heap[0][0] < at):
                txn = heapq.heappop(heap)[3]
                event = ClientEvent.TIMER_E
            elif queue is None:
                return done
            else:
                txn = queue.popleft()[1]
            result = self._client_step(txn, event, now)
            if result is not None:
                done.append(result)

    # --- server side ----------------------------------------------------------------------

    def server_match(self, key: ServerKey, now: float) -> bool:
        """Feed a request to its existing transaction; False when there is none."""
        txn = self.servers.get(key)
        if txn is None:
            return False
        self._server_step(txn, ServerEvent.REQUEST, now)
        return True

    def server_start(self, key: ServerKey, peer: Peer) -> ServerTransaction:
        txn = ServerTransaction(key, peer, peer.transport != "udp")
        self.servers[key] = txn
        return txn

    def server_send(self, txn: ServerTransaction, status: int, data: bytes, now: float) -> bool:
        """Send the application's response; False when the transaction no longer takes one."""
        event = ServerEvent.SEND_PROVISIONAL if status < 200 else ServerEvent.SEND_FINAL
        return self._server_step(txn, event, now, data)

    def _server_step(
        self, txn: ServerTransaction, event: ServerEvent, now: float, data: bytes = b""
    ) -> bool:
        action, txn.state = SERVER_TABLE[(txn.state, event)]
        if action is ServerAction.SEND:
            txn.last_response = data
            self._out.append(Transmit(data, txn.peer))
        elif action is ServerAction.SEND_FINAL:
            txn.last_response = data
            self._out.append(Transmit(data, txn.peer))
            if txn.reliable:  # Timer J is zero on reliable transports
                self._server_step(txn, ServerEvent.TIMER_J, now)
            else:
                self._timer_j.append((self._now(now) + 64 * self.timers.t1, txn))
        elif action is ServerAction.RESEND:
            if txn.last_response is not None:
                self._out.append(Transmit(txn.last_response, txn.peer))
        elif action is ServerAction.DESTROY:
            txn.last_response = None
            if self.servers.get(txn.key) is txn:
                del self.servers[txn.key]
        return action is not ServerAction.IGNORE

    # --- client side ----------------------------------------------------------------------

    def client_start(
        self,
        branch: str,
        method: str,
        data: bytes,
        peer: Peer,
        context: object,
        now: float,
    ) -> None:
        timers = self.timers
        now = self._now(now)
        reliable = peer.transport != "udp"
        txn = ClientTransaction(branch, method, data, peer, reliable, context, timers.t1)
        self.clients[branch] = txn
        self._out.append(Transmit(data, peer))
        if not reliable:  # no retransmissions over a reliable transport
            self._first_e.append((now + timers.t1, txn))
        timer_f = self._timer_f
        timer_f.append((now + 64 * timers.t1, txn))
        self.in_flight += 1
        if len(timer_f) > 4096 and len(timer_f) > 4 * self.in_flight:
            self._compact_timer_f()

    def client_response(
        self, branch: str, method: str, status: int, reason: str, now: float
    ) -> RequestCompleted | None:
        """Feed a response (matched by branch and CSeq method, §17.1.3); returns the
        completion when it is the first final answer, None otherwise (strays included)."""
        txn = self.clients.get(branch)
        if txn is None or txn.method != method:
            return None
        event = ClientEvent.PROVISIONAL if status < 200 else ClientEvent.FINAL
        return self._client_step(txn, event, now, status, reason)

    def client_transport_error(self, peer: Peer, now: float) -> list[RequestCompleted]:
        done: list[RequestCompleted] = []
        # Rare: a scan of what is in flight beats keeping a per-peer index for every send.
        in_flight = [txn for _, txn in self._timer_f if txn.state < State.COMPLETED]
        for txn in [txn for txn in in_flight if txn.peer == peer]:
            result = self._client_step(txn, ClientEvent.TRANSPORT_ERROR, now)
            if result is not None:
                done.append(result)
        return done

    def _client_step(
        self,
        txn: ClientTransaction,
        event: ClientEvent,
        now: float,
        status: int = 0,
        reason: str = "",
    ) -> RequestCompleted | None:
        before = txn.state
        action, txn.state = CLIENT_TABLE[(before, event)]
        if action is ClientAction.IGNORE or action is ClientAction.PROCEED:
            return None
        if action is ClientAction.RETRANSMIT:
            self._out.append(Transmit(txn.data, txn.peer))
            # §17.1.2.2: doubling up to T2 while Trying; T2 once a provisional came.
            t2 = self.timers.t2
            txn.interval = min(2 * txn.interval, t2) if before is State.TRYING else t2
            self._push(self._now(now) + txn.interval, txn)
            return None
        if action is ClientAction.DESTROY:
            if self.clients.get(txn.branch) is txn:
                del self.clients[txn.branch]
            return None
        self._finish(txn)
        if action is ClientAction.COMPLETE:
            if txn.reliable:  # Timer K is zero on reliable transports
                self._client_step(txn, ClientEvent.TIMER_K, now)
            else:
                self._timer_k.append((self._now(now) + self.timers.t4, txn))
            return RequestCompleted(txn.context, status, reason)
        if self.clients.get(txn.branch) is txn:
            del self.clients[txn.branch]
        if action is ClientAction.TIMEOUT:
            return RequestCompleted(txn.context, 408, "Request Timeout")
        return RequestCompleted(txn.context, 503, "Service Unavailable")

    def _finish(self, txn: ClientTransaction) -> None:
        """The transaction has its answer: stop tracking it as in flight (its Timer E
        and F entries are dropped lazily: the state makes them dead)."""
        self.in_flight -= 1
        txn.data = b""

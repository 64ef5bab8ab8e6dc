"""SIP user agents for the end-to-end tests, played by real ``sipp`` processes.

* :class:`SippReceiver` -- a long-lived sipp UAS that answers every request with a fixed
  status (200 by default, e.g. 404 for a user whose phone rejects everything) and records
  every message it sees with ``-trace_msg``.  The trace is parsed afterwards by byte count
  (sipp writes ``UDP message received [N] bytes``), so bodies may contain anything.
* :class:`SippSender` -- runs one short sipp UAC per request (about 15-25 ms each) and
  reads the final reply back from that run's trace.
* :class:`UserAgents` -- the small API the tests use: users, registration, ``send``,
  ``received`` and ``settle``.

sipp quirks this module works around (sipp 3.6.1):

* scenario text: every ``[`` starts a keyword and there is no escape, leading blanks of
  every line are removed, trailing blanks of the message are removed and a bare LF
  becomes CRLF.  Bodies are therefore normalised to CRLF line ends up front, bodies
  containing ``[`` are injected through an ``-inf`` CSV field (single line, no ``;``) and
  what sipp actually sent is checked against what was asked for;
* sipp maps replies to calls by Call-ID, so a fixed Call-ID is given with ``-cid_str``;
* the default call rate (10 cps) delays the first call by 100 ms: ``-r 1000``;
* a UAS treats a reused Call-ID as a retransmission and stays silent: Call-IDs must be
  unique per receiver (they are, unless a caller forces duplicates).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from imc_sidecar.demo.sidecar import free_port as free_port_anywhere

SIPP_BINARY = os.environ.get("IMC_E2E_SIPP", "/usr/bin/sipp")

# Compact header forms (RFC 3261 §7.3.3 and extensions) that may appear on the wire.
_COMPACT = {
    "f": "from",
    "t": "to",
    "i": "call-id",
    "c": "content-type",
    "l": "content-length",
    "k": "supported",
    "v": "via",
    "m": "contact",
    "s": "subject",
    "e": "content-encoding",
}


class SipUaError(RuntimeError):
    """A sipp process could not be started, or did not do what it was asked."""


def find_sipp() -> str:
    """Path of the sipp binary; raises (so that tests FAIL, not skip) when it is missing."""
    path = SIPP_BINARY if os.path.isabs(SIPP_BINARY) else shutil.which(SIPP_BINARY)
    if not path or not os.access(path, os.X_OK):
        raise SipUaError(f"sipp binary not found or not executable: {SIPP_BINARY!r}")
    return path


# --------------------------------------------------------------------------- ports


def free_port(ip: str = "127.0.0.1", *, avoid: Iterable[int] = ()) -> int:
    """A port that is free on ``ip`` right now, by the one rule of every test and the demo
    (`imc_sidecar.demo.sidecar.free_port`: free for UDP and TCP alike).

    Never returns 5060 or 5090-5099 (the default ports of Kamailio and the sidecar).
    """
    avoided = set(avoid) | {5060, *range(5090, 5100)}
    for _ in range(100):
        port = free_port_anywhere(ip)
        if port not in avoided:
            return port
    raise SipUaError(f"no free UDP port found on {ip}")


def free_udp_run(ip: str, count: int) -> int:
    """The first of ``count`` consecutive UDP ports that are free on ``ip`` right now."""
    for _ in range(100):
        first = free_port(ip)
        if all(_udp_free(ip, first + i) for i in range(1, count)):
            return first
    raise SipUaError(f"no {count} consecutive free UDP ports on {ip}")


def _udp_free(ip: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((ip, port))
        except OSError:
            return False
    return True


def udp_port_is_bound(ip: str, port: int) -> bool:
    """True when some process already holds ``ip:port`` (UDP)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((ip, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


# --------------------------------------------------------------------------- messages


def _norm_name(name: str) -> str:
    low = name.strip().lower()
    return _COMPACT.get(low, low)


_URI_IN_NAMEADDR = re.compile(r"<([^>]*)>")


def _uri_of(nameaddr: str) -> str:
    """The URI inside a From/To/Contact value, without the header parameters (tag...)."""
    m = _URI_IN_NAMEADDR.search(nameaddr)
    if m:
        return m.group(1).strip()
    return nameaddr.split(";", 1)[0].strip()


def uri_user(uri: str) -> str:
    """User part of a SIP URI as written (``sip:Alice@d:5070;x`` -> ``Alice``)."""
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    if "@" not in rest:
        return ""
    return rest.split("@", 1)[0]


@dataclass(frozen=True)
class SipMessage:
    """One SIP message as sipp saw it on the wire."""

    timestamp: float
    direction: Literal["received", "sent"]
    raw: bytes
    start_line: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    # -- generic access
    def header(self, name: str) -> str | None:
        """First value of a header (case-insensitive, compact forms understood)."""
        wanted = _norm_name(name)
        for hname, value in self.headers:
            if _norm_name(hname) == wanted:
                return value
        return None

    def header_values(self, name: str) -> list[str]:
        wanted = _norm_name(name)
        return [value for hname, value in self.headers if _norm_name(hname) == wanted]

    # -- request / response line
    @property
    def is_request(self) -> bool:
        return not self.start_line.startswith("SIP/")

    @property
    def method(self) -> str:
        return self.start_line.split(" ", 1)[0] if self.is_request else ""

    @property
    def request_uri(self) -> str:
        parts = self.start_line.split(" ")
        return parts[1] if self.is_request and len(parts) > 1 else ""

    @property
    def status(self) -> int:
        if self.is_request:
            return 0
        return int(self.start_line.split(" ", 2)[1])

    @property
    def reason(self) -> str:
        parts = self.start_line.split(" ", 2)
        return parts[2] if not self.is_request and len(parts) > 2 else ""

    # -- frequently used headers
    @property
    def from_uri(self) -> str:
        value = self.header("from")
        return _uri_of(value) if value is not None else ""

    @property
    def to_uri(self) -> str:
        value = self.header("to")
        return _uri_of(value) if value is not None else ""

    @property
    def call_id(self) -> str:
        return (self.header("call-id") or "").strip()

    @property
    def content_type(self) -> str | None:
        return self.header("content-type")

    @property
    def in_reply_to(self) -> str | None:
        return self.header("in-reply-to")

    @property
    def supported(self) -> str | None:
        return self.header("supported")

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def parse_sip_message(
    raw: bytes, *, timestamp: float = 0.0, direction: Literal["received", "sent"] = "received"
) -> SipMessage:
    """Split one SIP message into start line, headers (folded lines joined) and body."""
    sep = raw.find(b"\r\n\r\n")
    if sep < 0:
        head, body = raw, b""
    else:
        head, body = raw[:sep], raw[sep + 4 :]
    lines = head.decode("utf-8", errors="replace").split("\r\n")
    start_line = lines[0]
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, value + " " + line.strip())
            continue
        if ":" not in line:
            continue
        name, value = line.split(":", 1)
        headers.append((name.strip(), value.strip()))
    return SipMessage(
        timestamp=timestamp,
        direction=direction,
        raw=raw,
        start_line=start_line,
        headers=tuple(headers),
        body=body,
    )


# "----------------------------------------------- 2026-11-27 03:52:28.364157\n"
# "UDP message received [315] bytes :\n\n"   or   "UDP message sent (205 bytes):\n\n"
_TRACE_RECORD = re.compile(
    rb"-{20,} (\d{4}-\d\d-\d\d)[ \t](\d\d:\d\d:\d\d(?:\.\d+)?)\n"
    rb"(?:UDP|TCP|TLS|SCTP) message (received|sent) [\[(](\d+)(?:\]| ) ?bytes\)? ?:\n\n"
)


def parse_sipp_trace(data: bytes) -> list[SipMessage]:
    """Parse a sipp ``-trace_msg`` file.  A trailing, still incomplete record is ignored."""
    out: list[SipMessage] = []
    pos = 0
    while True:
        m = _TRACE_RECORD.search(data, pos)
        if not m:
            break
        size = int(m.group(4))
        start = m.end()
        if start + size > len(data):
            break
        raw = data[start : start + size]
        stamp = time.mktime(time.strptime(m.group(1).decode(), "%Y-%m-%d"))
        hms = m.group(2).decode()
        h, mi, s = hms.split(":")
        stamp += int(h) * 3600 + int(mi) * 60 + float(s)
        direction: Literal["received", "sent"] = "received" if m.group(3) == b"received" else "sent"
        out.append(parse_sip_message(raw, timestamp=stamp, direction=direction))
        pos = start + size
    return out


# --------------------------------------------------------------------------- processes


def _terminate(proc: subprocess.Popen[bytes], timeout: float = 3.0) -> None:
    if proc.poll() is not None:
        return
    # sipp ends cleanly on SIGUSR1 ("quit") as well as on SIGTERM
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=timeout)


_UAS_SCENARIO = """<?xml version="1.0" encoding="UTF-8"?>
<!-- generated by tests/e2e/harness/sipua.py: answer every {method} with {status} -->
<scenario name="imc-e2e-uas-{status}">
  <recv request="{method}"/>
  <send><![CDATA[
SIP/2.0 {status} {reason}
[last_Via:]
[last_From:]
[last_To:];tag=[pid]r[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
</scenario>
"""


class SippReceiver:
    """A sipp UAS on ``ip:port`` answering every MESSAGE with ``status``; records all."""

    def __init__(
        self,
        name: str,
        ip: str,
        port: int,
        workdir: Path,
        *,
        status: int = 200,
        reason: str = "OK",
        method: str = "MESSAGE",
    ) -> None:
        self.name = name
        self.ip = ip
        self.port = port
        self.status = status
        self.reason = reason
        self.method = method
        self.dir = workdir / f"uas-{name}"
        self.trace_path = self.dir / "messages.log"
        self.stderr_path = self.dir / "stderr.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._cache: tuple[int, list[SipMessage]] = (-1, [])

    @property
    def address(self) -> tuple[str, int]:
        return (self.ip, self.port)

    def start(self, timeout: float = 5.0) -> None:
        sipp = find_sipp()
        self.dir.mkdir(parents=True, exist_ok=True)
        scenario = self.dir / "uas.xml"
        scenario.write_text(
            _UAS_SCENARIO.format(status=self.status, reason=self.reason, method=self.method)
        )
        self.trace_path.touch()
        cmd = [
            sipp,
            "-sf", str(scenario),
            "-i", self.ip,
            "-p", str(self.port),
            "-cp", str(free_port("0.0.0.0", avoid=(self.port,))),
            "-nostdin",
            "-aa",
            "-trace_msg",
            "-message_file", str(self.trace_path),
        ]  # fmt: skip
        with open(self.stderr_path, "wb") as err:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                cwd=self.dir,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise SipUaError(
                    f"sipp receiver {self.name} exited with {self._proc.returncode}: "
                    + self.stderr_path.read_text(errors="replace")[-2000:]
                )
            if udp_port_is_bound(self.ip, self.port):
                return
            time.sleep(0.01)
        self.stop()
        raise SipUaError(f"sipp receiver {self.name} did not bind {self.ip}:{self.port}")

    def stop(self) -> None:
        if self._proc is not None:
            _terminate(self._proc)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def trace_size(self) -> int:
        try:
            return self.trace_path.stat().st_size
        except FileNotFoundError:
            return 0

    def messages(self) -> list[SipMessage]:
        """Every message in the trace (both directions), oldest first."""
        size = self.trace_size()
        if size != self._cache[0]:
            self._cache = (size, parse_sipp_trace(self.trace_path.read_bytes()))
        return list(self._cache[1])

    def requests(self) -> list[SipMessage]:
        """The requests this UA received, oldest first."""
        return [m for m in self.messages() if m.direction == "received" and m.is_request]


# --------------------------------------------------------------------------- sender


@dataclass(frozen=True)
class Reply:
    """Outcome of one request sent by :class:`SippSender`."""

    status: int  # 0 when no final reply arrived
    reason: str
    call_id: str
    request: SipMessage | None  # exactly what sipp put on the wire
    responses: tuple[SipMessage, ...]

    @property
    def final(self) -> SipMessage | None:
        finals = [r for r in self.responses if r.status >= 200]
        return finals[-1] if finals else None


# sipp's complaint when a port it needs is taken (its own, or its control port).
_BIND_FAILED = re.compile(r"Unable to bind (main|remote control) socket")
_FINAL_CODES = (
    200, 202, 400, 401, 403, 404, 405, 407, 408, 413, 415, 420, 477, 478, 480,
    481, 482, 483, 484, 486, 488, 500, 501, 502, 503, 504, 505, 513, 600, 603, 604, 606,
)  # fmt: skip

_ContentLength = int | Literal["auto"] | None


def _xml_cdata(text: str) -> str:
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def normalise_body(body: str | bytes) -> bytes:
    """The bytes sipp will put on the wire for ``body``: every bare LF becomes CRLF."""
    raw = body.encode("utf-8") if isinstance(body, str) else body
    return re.sub(rb"(?<!\r)\n", b"\r\n", raw)


class SippSender:
    """Sends one request per sipp run from ``ip:port`` to ``target`` (the proxy)."""

    _counter = itertools.count(1)

    def __init__(self, name: str, ip: str, port: int, target: tuple[str, int], workdir: Path):
        self.name = name
        self.ip = ip
        self.port = port
        self.target = target
        self.dir = workdir / f"uac-{name}"
        self.last_stderr = ""

    def request(
        self,
        method: str,
        ruri: str,
        *,
        from_uri: str,
        to_uri: str,
        body: str | bytes = b"",
        content_type: str | None = None,
        content_length: _ContentLength = "auto",
        call_id: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
        timeout: float = 10.0,
    ) -> Reply:
        sipp = find_sipp()
        self.dir.mkdir(parents=True, exist_ok=True)
        seq = next(self._counter)
        want_body = normalise_body(body)
        text_body = want_body.decode("utf-8")
        call_id = call_id or f"{uuid.uuid4().hex[:16]}-{seq}@{self.ip}"
        if "\r" in call_id or "\n" in call_id or " " in call_id:
            raise SipUaError(f"bad Call-ID {call_id!r}")

        inject: str | None = None
        if "[" in text_body:
            if "\n" in text_body or ";" in text_body:
                raise SipUaError(
                    "sipp cannot send a body with '[' unless it is one line without ';': "
                    f"{text_body[:80]!r}"
                )
            inject = text_body
            body_tpl = "[field0]"
        else:
            body_tpl = text_body.replace("\r\n", "\n")

        lines = [
            f"{method} {ruri} SIP/2.0",
            "Via: SIP/2.0/UDP [local_ip]:[local_port];branch=[branch];rport",
            f"From: <{from_uri}>;tag=[pid]s{seq}",
            f"To: <{to_uri}>",
            "Call-ID: [call_id]",
            f"CSeq: 1 {method}",
            "Max-Forwards: 70",
        ]
        for name, value in headers:
            if "[" in name or "[" in value:
                raise SipUaError("header values must not contain '['")
            lines.append(f"{name}: {value}")
        if content_type is not None:
            lines.append(f"Content-Type: {content_type}")
        if content_length == "auto":
            lines.append("Content-Length: [len]")
        elif content_length is not None:
            lines.append(f"Content-Length: {int(content_length)}")
        message = "\n".join(lines) + "\n\n" + body_tpl

        recvs = [
            '  <recv response="100" optional="true" next="wait"/>',
            '  <recv response="180" optional="true" next="wait"/>',
            '  <recv response="183" optional="true" next="wait"/>',
        ]
        for i, code in enumerate(_FINAL_CODES):
            optional = "true" if i < len(_FINAL_CODES) - 1 else "false"
            recvs.append(f'  <recv response="{code}" optional="{optional}" next="done"/>')
        scenario = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<scenario name="imc-e2e-uac-{seq}">\n'
            f"  <send>{_xml_cdata(chr(10) + message)}</send>\n"
            '  <label id="wait"/>\n' + "\n".join(recvs) + "\n"
            '  <label id="done"/>\n'
            "</scenario>\n"
        )
        scen_path = self.dir / f"req-{seq}.xml"
        trace_path = self.dir / f"req-{seq}.log"
        scen_path.write_text(scenario, encoding="utf-8")
        # sipp binds a UDP control port of its own; another process may take the free
        # port we picked before sipp binds it.  Nothing was sent then, so try again.
        for _attempt in range(3):
            cmd = [
                sipp,
                "-sf", str(scen_path),
                "-i", self.ip,
                "-p", str(self.port),
                # never our own port: bound on 0.0.0.0 first, it would block -i/-p
                "-cp", str(free_port("0.0.0.0", avoid=(self.port,))),
                "-m", "1",
                "-r", "1000",
                "-nr",
                "-nd",
                "-nostdin",
                "-cid_str", call_id.replace("%", "%%"),
                "-timeout", f"{max(1, int(timeout))}s",
                "-trace_msg",
                "-message_file", str(trace_path),
            ]  # fmt: skip
            if inject is not None:
                csv = self.dir / f"req-{seq}.csv"
                csv.write_text("SEQUENTIAL\n" + inject + ";\n", encoding="utf-8")
                cmd += ["-inf", str(csv)]
            cmd.append(f"{self.target[0]}:{self.target[1]}")
            try:
                proc = subprocess.run(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    cwd=self.dir,
                    timeout=timeout + 5,
                    check=False,
                )
                self.last_stderr = proc.stderr.decode(errors="replace")
            except subprocess.TimeoutExpired as exc:
                raise SipUaError(f"sipp sender {self.name} hung: {cmd}") from exc
            trace = parse_sipp_trace(trace_path.read_bytes()) if trace_path.exists() else []
            sent = [m for m in trace if m.direction == "sent" and m.is_request]
            if sent or not _BIND_FAILED.search(self.last_stderr):
                break
            time.sleep(0.2)  # a process that held the port may still be letting it go
        responses = tuple(
            m
            for m in trace
            if m.direction == "received" and not m.is_request and m.call_id == call_id
        )
        if not sent:
            raise SipUaError(
                f"sipp sender {self.name} sent nothing (rc {proc.returncode}): "
                + self.last_stderr[-2000:]
            )
        request = sent[0]
        if request.body != want_body:
            raise SipUaError(
                f"sipp altered the body: wanted {want_body[:120]!r}, sent {request.body[:120]!r}"
            )
        finals = [r for r in responses if r.status >= 200]
        status, reason = (finals[-1].status, finals[-1].reason) if finals else (0, "")
        for path in (scen_path, trace_path):
            path.unlink(missing_ok=True)
        (self.dir / f"req-{seq}.csv").unlink(missing_ok=True)
        return Reply(
            status=status, reason=reason, call_id=call_id, request=request, responses=responses
        )


# --------------------------------------------------------------------------- users


@dataclass
class User:
    """A SIP user: a sender (sipp UAC runs) and a contact served by a :class:`SippReceiver`."""

    name: str
    aor: str
    sender: SippSender
    receiver: SippReceiver | None
    contact: str | None
    register: bool


@dataclass(frozen=True)
class Mark:
    """A point in the traffic, from :meth:`UserAgents.mark`."""

    counts: Mapping[str, int] = field(default_factory=dict)


class UserAgents:
    """Users that register at ``proxy`` and exchange MESSAGEs through it.

    With ``shared_receiver=True`` (the default) every user whose phone answers 200 shares
    one sipp UAS; each registers its own contact ``sip:<user>@<ip>:<port>`` and messages
    are told apart by the request-URI user that ``lookup("location")`` puts there.  A single
    receiving socket keeps the exact arrival order across users (member-list order of
    broadcasts is observable).  Users with a failure status, or all users when
    ``shared_receiver=False``, get a receiver of their own on a distinct loopback address.
    """

    def __init__(
        self,
        workdir: Path,
        proxy: tuple[str, int],
        domain: str,
        *,
        shared_receiver: bool = True,
        receiver_ip: str = "127.0.1.1",
        sender_ip: str = "127.0.1.2",
    ) -> None:
        self.workdir = workdir
        self.proxy = proxy
        self.domain = domain
        self.shared_receiver = shared_receiver
        self.receiver_ip = receiver_ip
        self.sender_ip = sender_ip
        self.users: dict[str, User] = {}
        self.receivers: list[SippReceiver] = []
        self._shared: SippReceiver | None = None
        self._next_ip = 10
        self._started = False

    # -- setup
    def _own_ip(self) -> str:
        base = self.receiver_ip.rsplit(".", 1)[0]
        ip = f"{base}.{self._next_ip}"
        self._next_ip += 1
        return ip

    def add_user(
        self, name: str, *, status: int = 200, reason: str = "OK", register: bool = True
    ) -> User:
        if name in self.users:
            raise ValueError(f"duplicate user {name}")
        receiver: SippReceiver | None = None
        contact: str | None = None
        if register:
            if self.shared_receiver and status == 200:
                if self._shared is None:
                    port = free_port(self.receiver_ip)
                    self._shared = SippReceiver(
                        "shared", self.receiver_ip, port, self.workdir, status=200
                    )
                    self.receivers.append(self._shared)
                receiver = self._shared
            else:
                ip = self._own_ip()
                receiver = SippReceiver(
                    name, ip, free_port(ip), self.workdir, status=status, reason=reason
                )
                self.receivers.append(receiver)
            contact = f"sip:{name}@{receiver.ip}:{receiver.port}"
        sender = SippSender(
            name, self.sender_ip, free_port(self.sender_ip), self.proxy, self.workdir
        )
        user = User(
            name=name,
            aor=f"sip:{name}@{self.domain}",
            sender=sender,
            receiver=receiver,
            contact=contact,
            register=register,
        )
        self.users[name] = user
        return user

    def start(self) -> None:
        """Start the receivers and register every user that has a phone."""
        for receiver in self.receivers:
            if not receiver.running:
                receiver.start()
        self._started = True
        for user in self.users.values():
            if user.register:
                self.register(user.name)

    def register(self, name: str, expires: int = 3600) -> Reply:
        user = self.users[name]
        if user.contact is None:
            raise SipUaError(f"{name} has no phone to register")
        reply = user.sender.request(
            "REGISTER",
            f"sip:{self.domain}",
            from_uri=user.aor,
            to_uri=user.aor,
            headers=[("Contact", f"<{user.contact}>"), ("Expires", str(expires))],
        )
        if reply.status != 200:
            raise SipUaError(f"REGISTER of {name} failed: {reply.status} {reply.reason}")
        return reply

    def stop(self) -> None:
        for receiver in self.receivers:
            receiver.stop()

    def __enter__(self) -> UserAgents:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- traffic
    def send(
        self,
        user: str,
        ruri: str,
        body: str | bytes,
        *,
        from_uri: str | None = None,
        to_uri: str | None = None,
        content_type: str | None = "text/plain",
        content_length: _ContentLength = "auto",
        call_id: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> Reply:
        """``user`` sends one MESSAGE to ``ruri`` through the proxy; returns the final reply."""
        sender = self.users[user].sender
        return sender.request(
            "MESSAGE",
            ruri,
            from_uri=from_uri or self.users[user].aor,
            to_uri=to_uri or ruri,
            body=body,
            content_type=content_type,
            content_length=content_length,
            call_id=call_id,
            headers=headers,
        )

    def _all_received(self) -> list[tuple[str, SipMessage]]:
        """(recipient, request) for every request received by any user, in arrival order."""
        out: list[tuple[str, SipMessage]] = []
        for receiver in self.receivers:
            owners = [u for u in self.users.values() if u.receiver is receiver]
            by_contact_user = {uri_user(u.contact or ""): u.name for u in owners}
            for msg in receiver.requests():
                if receiver is self._shared:
                    name = by_contact_user.get(uri_user(msg.request_uri), "?unknown")
                else:
                    name = owners[0].name if owners else "?unknown"
                out.append((name, msg))
        out.sort(key=lambda item: item[1].timestamp)
        return out

    def received(self, user: str, since: Mark | None = None) -> list[SipMessage]:
        """MESSAGEs delivered to ``user`` (optionally only those after ``since``)."""
        msgs = [m for name, m in self._all_received() if name == user]
        if since is not None:
            msgs = msgs[since.counts.get(user, 0) :]
        return msgs

    def deliveries(self, since: Mark | None = None) -> list[tuple[str, SipMessage]]:
        """(recipient, message) for every request received after ``since``, in arrival order.

        The order is exact within one receiver (one socket); across receivers it follows
        sipp's timestamps.
        """
        per_user: dict[str, int] = {}
        out: list[tuple[str, SipMessage]] = []
        for name, msg in self._all_received():
            n = per_user.get(name, 0)
            per_user[name] = n + 1
            if since is None or n >= since.counts.get(name, 0):
                out.append((name, msg))
        return out

    def mark(self) -> Mark:
        counts: dict[str, int] = {}
        for name, _ in self._all_received():
            counts[name] = counts.get(name, 0) + 1
        return Mark(counts)

    def _trace_sizes(self) -> tuple[int, ...]:
        return tuple(r.trace_size() for r in self.receivers)

    def settle(self, quiet: float = 0.2, timeout: float = 5.0) -> bool:
        """Wait until no receiver has seen traffic for ``quiet`` seconds (bounded).

        Returns False when ``timeout`` passed while traffic was still flowing.
        """
        deadline = time.monotonic() + timeout
        last = self._trace_sizes()
        last_change = time.monotonic()
        while True:
            time.sleep(0.02)
            now = time.monotonic()
            sizes = self._trace_sizes()
            if sizes != last:
                last, last_change = sizes, now
            elif now - last_change >= quiet:
                return True
            if now >= deadline:
                return False

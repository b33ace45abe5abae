"""A lean MQTT QoS 1 publisher for the load mode: pre-encoded PUBLISH packets written in
batches on one socket, PUBACKs counted in bulk, a bounded window of unacknowledged packets.

paho spends tens of microseconds per message (objects, locks, one send per packet); this does
the few bytes MQTT needs itself so one process can saturate a local broker. Publishing only:
no subscriptions, no QoS 2, no session resumption (the load mode does not need them).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import time
from types import TracebackType

from common.settings import CommonSettings

CONNACK, PUBACK, PINGRESP, DISCONNECT = 0x20, 0x40, 0xD0, 0xE0
_RECEIVE_MAXIMUM = 0x21


class FastPublishError(Exception):
    """The broker refused the connection or broke the protocol."""


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str16(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return struct.pack("!H", len(data)) + data


class FastPublisher:
    """``with FastPublisher(settings, client_id) as pub: pub.publish_batch(...)``."""

    def __init__(self, settings: CommonSettings, client_id: str, window: int = 2000) -> None:
        self.settings = settings
        self.client_id = settings.mqtt_client_id or client_id
        self.v5 = settings.mqtt_protocol == "5"
        self.window = max(1, min(window, 65_000))
        self.inflight = 0
        self.acked = 0
        self._next_id = 0
        self._buf = b""
        self._sock: socket.socket | ssl.SSLSocket | None = None
        self._last_io = time.monotonic()

    # -- connection ------------------------------------------------------------------------
    def connect(self, timeout: float = 10.0) -> None:
        s = self.settings
        sock: socket.socket | ssl.SSLSocket = socket.create_connection(
            (s.mqtt_host, s.mqtt_port), timeout=timeout
        )
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if s.mqtt_tls:
            ctx = ssl.create_default_context(cafile=str(s.mqtt_ca_file) if s.mqtt_ca_file else None)
            if s.mqtt_tls_insecure:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            sock = ctx.wrap_socket(sock, server_hostname=s.mqtt_host)
        self._sock = sock
        user, password = s.mqtt_credentials()
        flags = 0x02  # clean start: a load run never resumes a session
        payload = _str16(self.client_id)
        if user is not None:
            flags |= 0x80
            payload += _str16(user)
            if password is not None:
                flags |= 0x40
                payload += _str16(password)
        level = 5 if self.v5 else 4
        head = _str16("MQTT") + bytes([level, flags]) + struct.pack("!H", s.mqtt_keepalive_s)
        if self.v5:
            head += b"\x00"  # no CONNECT properties
        body = head + payload
        sock.sendall(b"\x10" + _varint(len(body)) + body)
        kind, data = self._read_packet()
        if kind != CONNACK or len(data) < 2:
            raise FastPublishError(f"expected CONNACK, got packet type {kind:#x}")
        if data[1] != 0:
            raise FastPublishError(f"broker refused connection (reason code {data[1]:#x})")
        if self.v5:
            self.window = min(self.window, _receive_maximum(data[2:]) or self.window)

    def close(self) -> None:
        if self._sock is None:
            return
        with contextlib.suppress(OSError):  # the broker may already be gone
            self._sock.sendall(bytes([DISCONNECT, 0]))
        self._sock.close()
        self._sock = None

    def __enter__(self) -> FastPublisher:
        self.connect()
        return self

    def __exit__(
        self,
        _t: type[BaseException] | None,
        _e: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- publishing ------------------------------------------------------------------------
    def room(self) -> int:
        return self.window - self.inflight

    def packet(self, topic: bytes, payload: bytes) -> bytes:
        """One PUBLISH, QoS 1, with the next packet id (``topic`` is pre-encoded: _str16)."""
        self._next_id = self._next_id % 65_535 + 1
        props = b"\x00" if self.v5 else b""
        length = len(topic) + 2 + len(props) + len(payload)
        return (
            b"\x32" + _varint(length) + topic + struct.pack("!H", self._next_id) + props + payload
        )

    def send(self, packets: list[bytes]) -> None:
        """Write a batch the caller built within :meth:`room`."""
        assert self._sock is not None
        self._sock.sendall(b"".join(packets))
        self.inflight += len(packets)
        self._last_io = time.monotonic()

    def wait_acks(self, block: bool, timeout: float = 30.0) -> int:
        """Read whatever PUBACKs arrived (waiting for at least one when ``block``)."""
        assert self._sock is not None
        self._sock.settimeout(timeout if block else 0.0)
        try:
            chunk = self._sock.recv(1 << 16)
        except (BlockingIOError, ssl.SSLWantReadError):
            return 0
        except TimeoutError:
            raise FastPublishError(f"no PUBACK within {timeout:.0f} s") from None
        if not chunk:
            raise FastPublishError("broker closed the connection")
        self._buf += chunk
        acks = self._consume()
        self.inflight -= acks
        self.acked += acks
        return acks

    def drain(self, timeout: float = 30.0) -> None:
        while self.inflight > 0:
            self.wait_acks(block=True, timeout=timeout)

    def ping_if_idle(self) -> None:
        if time.monotonic() - self._last_io > self.settings.mqtt_keepalive_s / 2:
            assert self._sock is not None
            self._sock.sendall(b"\xc0\x00")
            self._last_io = time.monotonic()

    # -- reading ---------------------------------------------------------------------------
    def _consume(self) -> int:
        buf, pos, acks = self._buf, 0, 0
        end = len(buf)
        while pos + 2 <= end:
            kind = buf[pos] & 0xF0
            if buf[pos + 1] < 0x80:  # a one-byte length (every PUBACK): no call on the hot path
                length, i = buf[pos + 1], pos + 2
            else:
                decoded = _read_varint(buf, pos + 1)
                if decoded is None:
                    break
                length, i = decoded
            if i + length > end:
                break
            if kind == PUBACK:
                # v5: a reason code >= 0x80 means the broker refused the message.
                if length >= 3 and buf[i + 2] >= 0x80:
                    raise FastPublishError(f"broker refused a message (reason {buf[i + 2]:#x})")
                acks += 1
            elif kind == DISCONNECT:
                raise FastPublishError("broker sent DISCONNECT")
            elif kind != PINGRESP:
                raise FastPublishError(f"unexpected packet type {kind:#x}")
            pos = i + length
        self._buf = buf[pos:]
        return acks

    def _read_packet(self) -> tuple[int, bytes]:
        assert self._sock is not None
        header = self._recv_exact(1)[0]
        length, shift = 0, 0
        while True:
            byte = self._recv_exact(1)[0]
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        return header & 0xF0, self._recv_exact(length)

    def _recv_exact(self, n: int) -> bytes:
        assert self._sock is not None
        data = b""
        while len(data) < n:
            chunk = self._sock.recv(n - len(data))
            if not chunk:
                raise FastPublishError("broker closed the connection")
            data += chunk
        return data


def _read_varint(data: bytes, i: int) -> tuple[int, int] | None:
    """The MQTT variable byte integer at ``data[i:]`` and the index after it; None if cut short."""
    value, shift = 0, 0
    while i < len(data):
        byte = data[i]
        value |= (byte & 0x7F) << shift
        shift += 7
        i += 1
        if not byte & 0x80:
            return value, i
    return None


def _receive_maximum(props: bytes) -> int | None:
    """Find Receive Maximum in CONNACK properties (v5); other properties are skipped."""
    decoded = _read_varint(props, 0)
    if decoded is None:
        return None
    length, i = decoded
    end = i + length
    while i < end:
        ident = props[i]
        i += 1
        if ident == _RECEIVE_MAXIMUM:
            return int(struct.unpack_from("!H", props, i)[0])
        i += _property_size(ident, props, i)
    return None


def _property_size(ident: int, data: bytes, i: int) -> int:
    if ident in (0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A):  # byte
        return 1
    if ident in (0x13, 0x21, 0x22, 0x23):  # two-byte integer
        return 2
    if ident in (0x02, 0x11, 0x18, 0x27):  # four-byte integer
        return 4
    if ident == 0x0B:  # variable byte integer
        n = 1
        while data[i + n - 1] & 0x80:
            n += 1
        return n
    if ident == 0x26:  # user property: two strings
        first = 2 + int(struct.unpack_from("!H", data, i)[0])
        return first + 2 + int(struct.unpack_from("!H", data, i + first)[0])
    # strings and binary data
    return 2 + int(struct.unpack_from("!H", data, i)[0])


def topic_bytes(topic: str) -> bytes:
    return _str16(topic)

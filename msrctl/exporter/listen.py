"""The --listen address: HOST:PORT, [IPV6]:PORT or :PORT (every interface), parsed and then
bound, each failure one line (what, why, what to do) with its exit code."""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass

from .. import errors
from ..errors import MsrctlError, UsageError

DEFAULT_PORT = 9838
DEFAULT = f"127.0.0.1:{DEFAULT_PORT}"
_EXAMPLE = f"e.g. --listen {DEFAULT}, --listen [::1]:{DEFAULT_PORT} or --listen :{DEFAULT_PORT}"


@dataclass(frozen=True)
class Address:
    host: str  # "" for every interface
    port: int

    def url(self) -> str:
        host = self.host or "0.0.0.0"
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}/metrics"


def parse(text: str) -> Address:
    """HOST:PORT, [IPV6]:PORT or :PORT; UsageError (exit 64) for anything else."""
    bad = f"bad listen address '{text}'"
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise UsageError(bad, "an IPv6 address needs brackets and a port", _EXAMPLE)
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise UsageError(bad, "it has no port", _EXAMPLE)
        if ":" in host:
            raise UsageError(bad, "an IPv6 address needs brackets", _EXAMPLE)
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise UsageError(bad, f"the port '{port_text}' is not a number from 1 to 65535", _EXAMPLE)
    return Address(host, int(port_text))


def bind(addr: Address) -> socket.socket:
    """A listening TCP socket on addr; MsrctlError (exit 69) when the address cannot be used."""
    where = f"{addr.host or '*'}:{addr.port}"
    try:
        infos = socket.getaddrinfo(addr.host or None, addr.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise UsageError(
            f"bad listen address '{where}'", f"the host '{addr.host}' does not resolve ({e.strerror})", _EXAMPLE
        ) from None
    family, kind, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart may bind while old sockets linger
        sock.bind(sockaddr)
        sock.listen(16)
    except OSError as e:
        sock.close()
        raise MsrctlError(f"cannot listen on {where}", _why(e), _fix(e, addr), errors.UNAVAILABLE) from None
    return sock


def _why(e: OSError) -> str:
    if e.errno == errno.EADDRINUSE:
        return "another program already listens on that port"
    if e.errno == errno.EADDRNOTAVAIL:
        return "that address is not one of this machine's"
    return e.strerror or os.strerror(e.errno or 0)


def _fix(e: OSError, addr: Address) -> str:
    if e.errno == errno.EADDRINUSE:
        return f"stop it (see: ss -ltnp 'sport = :{addr.port}') or choose another port with --listen"
    if e.errno == errno.EACCES and addr.port < 1024:
        return "ports below 1024 need privilege: choose a port from 1024 up"
    return "choose an address of this machine with --listen, e.g. " + DEFAULT

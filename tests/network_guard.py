"""Tests may reach loopback only: connecting anywhere else (the metadata server included) raises."""

from __future__ import annotations

import ipaddress
import socket


class NetworkForbidden(OSError):
    """A test tried to reach an address that is not loopback."""


def _check_address(sock: socket.socket, address: object) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or not isinstance(address, tuple):
        return  # unix sockets (PostgreSQL) are local by nature
    host = str(address[0])
    try:
        loopback = ipaddress.ip_address(host.split("%", maxsplit=1)[0]).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise NetworkForbidden(f"tests may only reach loopback, not {host}")


_real_connect, _real_connect_ex = socket.socket.connect, socket.socket.connect_ex


def _guarded_connect(self: socket.socket, address: object) -> None:
    _check_address(self, address)
    _real_connect(self, address)  # type: ignore[arg-type]


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    _check_address(self, address)
    return _real_connect_ex(self, address)  # type: ignore[arg-type]


def install_network_guard() -> None:
    """Make every Python-level connection in this process refuse non-loopback addresses. (gRPC's C core has
    its own sockets; its only peer in the tests is the local Batch service on 127.0.0.1.)"""
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]

"""HTTP proxies for the client: pick one from the environment, open a CONNECT tunnel.

The tunnel is a plain TCP socket to the proxy on which the proxy has agreed
to relay bytes to the target; :func:`~ripple.client.connect` hands it to
``loop.create_connection(sock=...)``, which starts TLS on it for wss://.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import os
import socket
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from .exceptions import InvalidHandshake, InvalidMessage, SecurityError
from .protocol.headers import Headers
from .protocol.http11 import Response

__all__ = ["Proxy", "ProxyError", "bypass_proxy", "open_tunnel", "parse_proxy", "proxy_from_env"]

#: Largest proxy response head we read, in bytes.
MAX_PROXY_HEAD = 16384
#: Most header lines in a proxy response.
MAX_PROXY_HEADERS = 64
#: Most bytes of a refusal's body kept in ``ProxyError.response``.
MAX_PROXY_BODY = 4096


class ProxyError(InvalidHandshake):
    """The HTTP proxy refused to open the tunnel (or didn't answer properly).

    Attributes:
        proxy: the proxy's URL, without credentials.
        status: the proxy's HTTP status code; None when it didn't send a
            valid response.
        response: the proxy's response, when it sent one.
    """

    def __init__(self, proxy: str, message: str, response: Response | None = None) -> None:
        self.proxy = proxy
        self.response = response
        self.status: int | None = None if response is None else response.status_code
        super().__init__(message)


@dataclass(frozen=True)
class Proxy:
    """A parsed ``http://[user:password@]host[:port]`` proxy URL."""

    host: str
    port: int
    credentials: tuple[str, str] | None = None

    @property
    def url(self) -> str:
        """The URL without credentials (safe to show in errors and logs)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def parse_proxy(url: str) -> Proxy:
    """Parse an HTTP proxy URL; ``host:port`` alone means ``http://host:port``.

    Raises:
        ValueError: not an http:// proxy URL, with what to pass instead.
    """
    if "://" not in url:
        url = "http://" + url
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"invalid proxy URL {url!r}: {exc}") from None
    if parts.scheme.lower() != "http":
        raise ValueError(
            f"unsupported proxy URL {url!r}: only http:// proxies (CONNECT) are supported; "
            "pass proxy='http://host:port'"
        )
    if not parts.hostname:
        raise ValueError(f"invalid proxy URL {url!r}: missing host")
    credentials = None
    if parts.username is not None:
        credentials = (
            urllib.parse.unquote(parts.username),
            urllib.parse.unquote(parts.password or ""),
        )
    return Proxy(parts.hostname, port if port is not None else 80, credentials)


def _env(environ: Mapping[str, str], name: str) -> str:
    # The lower-case name wins, as with curl; an empty value counts as unset.
    return environ.get(name.lower()) or environ.get(name.upper()) or ""


def bypass_proxy(host: str, port: int, no_proxy: str) -> bool:
    """Whether ``host:port`` is excluded from proxying by a NO_PROXY value.

    Entries are separated by commas (or spaces): ``*`` matches every host; a
    name matches itself and its subdomains (``example.com`` and
    ``.example.com`` both match ``api.example.com``); an address matches
    itself, a network (``10.0.0.0/8``) the addresses in it; ``:port`` after an
    entry limits it to that port.
    """
    host = host.lower().strip("[]").rstrip(".")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in no_proxy.replace(" ", ",").split(","):
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        entry_port: int | None = None
        if entry.startswith("["):  # [::1]:8080
            name, _, rest = entry[1:].partition("]")
            if rest.startswith(":") and rest[1:].isdigit():
                entry_port = int(rest[1:])
            entry = name
        elif entry.count(":") == 1:  # host:port (a bare IPv6 address has more colons)
            name, _, rest = entry.partition(":")
            if rest.isdigit():
                entry, entry_port = name, int(rest)
        if entry_port is not None and entry_port != port:
            continue
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        entry = entry.lstrip(".").rstrip(".")
        if entry and (host == entry or host.endswith("." + entry)):
            return True
    return False


def proxy_from_env(
    host: str, port: int, secure: bool, environ: Mapping[str, str] | None = None
) -> str | None:
    """The proxy URL the environment gives for a ws:// or wss:// target, if any.

    wss:// uses ``https_proxy`` (then ``HTTPS_PROXY``), ws:// ``http_proxy``
    (then ``HTTP_PROXY``); ``no_proxy`` / ``NO_PROXY`` exclude hosts (see
    :func:`bypass_proxy`).
    """
    environ = os.environ if environ is None else environ
    url = _env(environ, "https_proxy" if secure else "http_proxy")
    if not url or bypass_proxy(host, port, _env(environ, "no_proxy")):
        return None
    return url


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def connect_request(proxy: Proxy, host: str, port: int, user_agent: str | None) -> bytes:
    """The CONNECT request asking ``proxy`` for a tunnel to ``host:port``."""
    target = _authority(host, port)
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    if proxy.credentials is not None:
        token = base64.b64encode(":".join(proxy.credentials).encode()).decode()
        lines.append(f"Proxy-Authorization: Basic {token}")
    if user_agent is not None:
        lines.append(f"User-Agent: {user_agent}")
    for line in lines:
        if any(c in line for c in "\r\n\0"):
            raise ValueError("proxy credentials and target must not contain CR, LF or NUL")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def parse_proxy_response(proxy: Proxy, head: bytes, extra: bytes) -> Response:
    """Parse the proxy's answer head (ending with CRLF CRLF); ``extra`` is what followed.

    Raises:
        ProxyError: the head isn't a valid HTTP/1.x response.
    """
    lines = head[:-4].split(b"\r\n")
    if len(lines) - 1 > MAX_PROXY_HEADERS:
        raise ProxyError(
            proxy.url, f"proxy {proxy.url} sent more than {MAX_PROXY_HEADERS} headers"
        )
    version, _, rest = lines[0].partition(b" ")
    status, _, reason = rest.partition(b" ")
    if version not in (b"HTTP/1.0", b"HTTP/1.1") or not (len(status) == 3 and status.isdigit()):
        raise ProxyError(
            proxy.url, f"proxy {proxy.url} sent an invalid status line: {lines[0][:80]!r}"
        )
    headers = Headers()
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise ProxyError(proxy.url, f"proxy {proxy.url} sent an invalid header: {line[:80]!r}")
        headers[name.decode("latin-1")] = value.strip().decode("latin-1")
    body = b""
    length = headers.get("Content-Length")
    if length is not None and length.isascii() and length.isdigit():
        body = extra[: min(int(length), MAX_PROXY_BODY)]
    return Response(int(status), reason.decode("latin-1"), headers, body)


async def open_tunnel(
    proxy: Proxy | str,
    host: str,
    port: int,
    *,
    user_agent: str | None = None,
) -> socket.socket:
    """Connect to ``proxy`` and ask it (CONNECT) for a tunnel to ``host:port``.

    Returns the connected, non-blocking socket; the caller bounds the time.

    Raises:
        OSError: the proxy can't be reached.
        ProxyError: the proxy refused (``exc.status``: 407 for wrong or
            missing credentials, 403 for a forbidden target, 502/503/504
            when it couldn't reach the target) or answered nonsense.
    """
    if isinstance(proxy, str):
        proxy = parse_proxy(proxy)
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(proxy.host, proxy.port, type=socket.SOCK_STREAM)
    if not infos:  # pragma: no cover - getaddrinfo raises instead
        raise OSError(f"can't resolve proxy host {proxy.host!r}")
    errors: list[OSError] = []
    sock: socket.socket | None = None
    for family, type_, proto, _, address in infos:
        candidate = socket.socket(family, type_, proto)
        try:
            candidate.setblocking(False)
            await loop.sock_connect(candidate, address)
        except OSError as exc:
            candidate.close()
            errors.append(exc)
            continue
        except BaseException:
            candidate.close()
            raise
        sock = candidate
        break
    if sock is None:
        if len(errors) == 1:
            raise errors[0]
        raise OSError(f"can't connect to proxy {proxy.url}: {'; '.join(map(str, errors))}")
    try:
        await loop.sock_sendall(sock, connect_request(proxy, host, port, user_agent))
        buf = b""
        while (end := buf.find(b"\r\n\r\n")) < 0:
            if len(buf) > MAX_PROXY_HEAD:
                raise SecurityError(
                    f"proxy {proxy.url} response head exceeds {MAX_PROXY_HEAD} bytes"
                )
            chunk = await loop.sock_recv(sock, 4096)
            if not chunk:
                raise ProxyError(
                    proxy.url, f"proxy {proxy.url} closed the connection before answering CONNECT"
                )
            buf += chunk
        head, extra = buf[: end + 4], buf[end + 4 :]
        if len(head) > MAX_PROXY_HEAD:
            raise SecurityError(f"proxy {proxy.url} response head exceeds {MAX_PROXY_HEAD} bytes")
        response = parse_proxy_response(proxy, head, extra)
        if not 200 <= response.status_code < 300:
            raise ProxyError(
                proxy.url,
                f"proxy {proxy.url} refused to connect to {_authority(host, port)}: "
                f"HTTP {response.status_code} {response.reason_phrase}".rstrip(),
                response,
            )
        if extra:
            # The target speaks only after we do: bytes here aren't from it.
            raise InvalidMessage(f"proxy {proxy.url} sent data after its 2xx to CONNECT")
    except BaseException:
        sock.close()
        raise
    return sock

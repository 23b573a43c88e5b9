"""HTTP Basic authentication (RFC 7617) for the opening handshake: `basic_auth`."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Union, overload

from .protocol.http11 import Request, Response
from .server import HANDLER_CHECKS, Handler, ServerConnection

__all__ = ["BasicAuth", "CheckCredentials", "basic_auth"]

CheckCredentials = Callable[[str, str], Union[bool, Awaitable[bool]]]
Credentials = Union[tuple[str, str], Iterable[tuple[str, str]]]


class _Refused(Exception):
    """Why a request's credentials were refused; never contains them."""


def _digest(value: str) -> bytes:
    # Comparing fixed-size digests keeps compare_digest's time independent
    # of the secret's length too.
    return hashlib.sha256(value.encode()).digest()


def _parse_authorization(request: Request) -> tuple[str, str]:
    """The (username, password) of a Basic Authorization header.

    Raises:
        _Refused: missing, another scheme, or malformed.
    """
    values = request.headers.get_all("Authorization")
    if not values:
        raise _Refused("missing credentials")
    if len(values) > 1:
        raise _Refused("malformed credentials: more than one Authorization header")
    scheme, _, token = values[0].strip().partition(" ")
    if scheme.lower() != "basic":  # auth-scheme is case-insensitive (RFC 9110 §11.1)
        raise _Refused("unsupported authorization scheme; use Basic")
    try:
        decoded = base64.b64decode(token.strip().encode("ascii"), validate=True)
        user_pass = decoded.decode("utf-8")
    except (UnicodeError, binascii.Error):
        raise _Refused("malformed credentials: not base64-encoded UTF-8") from None
    username, colon, password = user_pass.partition(":")
    if not colon:
        raise _Refused("malformed credentials: no colon between user name and password")
    return username, password


class BasicAuth:
    """HTTP Basic authentication for a server, built by :func:`basic_auth`.

    Use it in either of two ways:

    - as a decorator on a handler: ``@basic_auth("admin", "secret")``. The
      decorated handler, passed to :func:`serve`, makes the server check
      credentials before upgrading, ahead of ``process_request``.
    - as ``serve(..., process_request=basic_auth(...))``, or awaited from
      your own ``process_request``: ``await auth(connection, request)``
      returns None when the credentials are valid, or the 401 to return.

    On success, ``connection.username`` is the authenticated user name.

    Attributes:
        realm: the realm named in the ``WWW-Authenticate`` challenge.
    """

    def __init__(self, realm: str, check: Callable[[str, str], Awaitable[bool]]) -> None:
        self.realm = realm
        self._check = check
        escaped = realm.replace("\\", "\\\\").replace('"', '\\"')
        self._challenge = f'Basic realm="{escaped}", charset="UTF-8"'

    @overload
    def __call__(self, handler: Handler, /) -> Handler: ...

    @overload
    def __call__(
        self, connection: ServerConnection, request: Request, /
    ) -> Awaitable[Response | None]: ...

    def __call__(self, *args: Any) -> Any:
        """``auth(handler)`` decorates a handler; ``auth(connection, request)`` checks.

        Raises:
            TypeError: called with anything else.
        """
        if len(args) == 1:
            return self.decorate(args[0])
        if len(args) == 2:
            return self.check(args[0], args[1])
        raise TypeError(
            "a BasicAuth decorates a handler, auth(handler), or checks a request, "
            f"auth(connection, request); got {len(args)} arguments"
        )

    def decorate(self, handler: Handler) -> Handler:
        """Return ``handler`` marked so that :func:`serve` authenticates first.

        Raises:
            TypeError: ``handler`` isn't callable.
        """
        if not callable(handler):
            raise TypeError(
                f"basic_auth(...) decorates a handler, async def handler(connection); "
                f"got {handler!r}"
            )

        @functools.wraps(handler)
        async def authenticated(connection: ServerConnection) -> None:
            if connection.username is None:
                # Only serve() knows to run the check: a wrapper around this
                # handler hides the mark, and no request may slip through.
                raise RuntimeError(
                    "basic_auth didn't run for this connection: pass the decorated "
                    "handler itself to ripple.serve(), or use process_request=basic_auth(...)"
                )
            await handler(connection)

        # functools.wraps copied any inner marks; the outer check runs first.
        setattr(authenticated, HANDLER_CHECKS, (self, *getattr(handler, HANDLER_CHECKS, ())))
        return authenticated

    async def check(self, connection: ServerConnection, request: Request) -> Response | None:
        """Check a request's credentials: None if valid, else the 401 to send.

        Sets ``connection.username`` on success.

        Raises:
            TypeError: ``check_credentials`` returned something other than a bool.
        """
        try:
            username, password = _parse_authorization(request)
            if not await self._check(username, password):
                raise _Refused("invalid credentials")
        except _Refused as exc:
            connection.logger.debug("basic auth refused: %s", exc)
            response = connection.respond(401, f"{exc}\n")
            response.headers["WWW-Authenticate"] = self._challenge
            return response
        connection.username = username
        connection.logger.debug("basic auth: authenticated %r", username)
        return None

    def __repr__(self) -> str:
        return f"BasicAuth(realm={self.realm!r})"


def _fixed(credentials: list[tuple[str, str]]) -> Callable[[str, str], Awaitable[bool]]:
    digests = [(_digest(user), _digest(password)) for user, password in credentials]

    async def check(username: str, password: str) -> bool:
        user_digest, password_digest = _digest(username), _digest(password)
        valid = False
        for expected_user, expected_password in digests:
            # & and |=, not `and`/`or`: every pair is compared, always.
            valid |= hmac.compare_digest(user_digest, expected_user) & hmac.compare_digest(
                password_digest, expected_password
            )
        return valid

    return check


def _custom(check_credentials: CheckCredentials) -> Callable[[str, str], Awaitable[bool]]:
    async def check(username: str, password: str) -> bool:
        result = check_credentials(username, password)
        if inspect.isawaitable(result):
            result = await result
        if not isinstance(result, bool):
            # The type only: the value might echo a secret.
            raise TypeError(
                f"check_credentials must return True or False, not {type(result).__name__}"
            )
        return result

    return check


def _check_pair(pair: object) -> tuple[str, str]:
    if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
        raise TypeError(
            "credentials must be a (username, password) tuple of str or a list of them"
        )
    username, password = pair
    if ":" in username:
        raise ValueError("a Basic auth user name can't contain ':' (RFC 7617 §2)")
    username.encode()
    password.encode()  # fail here, not at the first client, on lone surrogates
    return username, password


def basic_auth(
    username: str | None = None,
    password: str | None = None,
    realm: str = "WebSocket",
    *,
    credentials: Credentials | None = None,
    check_credentials: CheckCredentials | None = None,
) -> BasicAuth:
    """HTTP Basic authentication (RFC 7617) for a server.

    Give the accepted credentials in exactly one way::

        @basic_auth("admin", "secret")                      # one user, decorator
        async def handler(websocket): ...

        serve(handler, host, port,
              process_request=basic_auth(credentials=[("alice", "a"), ("bob", "b")]))

        async def check(username, password):                # sync or async
            return await users.verify(username, password)
        serve(handler, host, port, process_request=basic_auth(check_credentials=check))

    A request without valid credentials gets a 401 with ``WWW-Authenticate:
    Basic realm="...", charset="UTF-8"``; malformed ones get the same 401,
    never a 500. Fixed credentials are compared in constant time
    (:func:`hmac.compare_digest`, every pair every time); with
    ``check_credentials``, that is up to your function. Passwords are never
    logged. Basic auth sends the password in clear: serve it over TLS (wss://).

    Args:
        username: the user name, with ``password``.
        password: the password, with ``username``.
        realm: the realm named in the challenge.
        credentials: a ``(username, password)`` pair or a list of pairs.
        check_credentials: ``(username, password) -> bool``, sync or async.

    Returns:
        A :class:`BasicAuth`: a handler decorator and a ``process_request``.

    Raises:
        TypeError: not exactly one way of giving credentials, or wrong types.
        ValueError: a user name with ':', no credentials, or a realm that
            isn't printable ASCII.
    """
    if not isinstance(realm, str) or not (realm.isascii() and realm.isprintable()):
        raise ValueError(f"realm must be a str of printable ASCII characters, got {realm!r}")
    given = sum(x is not None for x in (username, credentials, check_credentials))
    if given != 1 or (username is None) != (password is None):
        raise TypeError(
            "basic_auth needs exactly one of: basic_auth(username, password), "
            "basic_auth(credentials=[(username, password), ...]), "
            "basic_auth(check_credentials=function)"
        )
    if check_credentials is not None:
        if not callable(check_credentials):
            raise TypeError(
                "check_credentials must be a function (username, password) -> bool, "
                f"got {check_credentials!r}"
            )
        return BasicAuth(realm, _custom(check_credentials))
    if username is not None:
        pairs = [_check_pair((username, password))]
    elif (
        isinstance(credentials, tuple)
        and len(credentials) == 2
        and isinstance(credentials[0], str)
    ):
        pairs = [_check_pair(credentials)]
    else:
        if isinstance(credentials, (str, bytes)) or not isinstance(credentials, Iterable):
            raise TypeError(
                "credentials must be a (username, password) tuple of str or a list of them"
            )
        pairs = [_check_pair(pair) for pair in credentials]
        if not pairs:
            raise ValueError("credentials is empty: nobody could authenticate")
    return BasicAuth(realm, _fixed(pairs))

"""Real failures of an HTTPS POST, made against a TLS server on localhost that fails the
way it is asked to, so tests classify what ``requests`` and ``urllib3`` really raise (their
types, what they wrap, where they were raised) rather than exceptions built by hand."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

#: How the server fails, and whether the POST may have reached it (the request was
#: written before the failure).
BEFORE_SENDING = {
    "not-tls": "the server answers the handshake in plain text (wrong version number)",
    "unknown-ca": "the server's certificate is signed by no CA the client trusts",
    "handshake-hangs": "the server never answers the handshake (a timeout)",
    "handshake-reset": "the server resets the connection during the handshake",
    "refused": "nothing listens on the port",
}
AFTER_SENDING = {
    "bad-record": "a TLS record that fails to decrypt instead of the answer (SSLError)",
    "closed": "the connection closed while the answer is awaited",
    "answer-hangs": "no answer within the read timeout (ReadTimeout)",
}

_LINGER_RESET = struct.pack("ii", 1, 0)  # close() then sends a TCP reset


def _certificate(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _request_read(conn: ssl.SSLSocket) -> None:
    """Read one whole request (headers and its Content-Length of body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return
        body += chunk


class TlsFailures:
    """``post(behaviour)``: the exception a POST to a server failing that way raises."""

    def __init__(self, folder: Path) -> None:
        self.cert, key = _certificate(folder)
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(self.cert, key)
        self.received: list[str] = []  # behaviours whose request reached the server

    def _behaviour(self, name: str) -> Callable[[socket.socket], None]:
        def taken(conn: socket.socket) -> ssl.SSLSocket:
            tls = self.context.wrap_socket(conn, server_side=True)
            _request_read(tls)
            self.received.append(name)
            return tls

        def not_tls(conn: socket.socket) -> None:
            conn.recv(1024)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

        def handshake_hangs(conn: socket.socket) -> None:
            time.sleep(3)

        def handshake_reset(conn: socket.socket) -> None:
            conn.recv(16)  # the start of the ClientHello
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)

        def bad_record(conn: socket.socket) -> None:
            raw = socket.socket(fileno=taken(conn).detach())
            raw.sendall(b"\x17\x03\x03\x00\x20" + b"\x00" * 32)  # application data, garbage
            time.sleep(1)
            raw.close()

        def closed(conn: socket.socket) -> None:
            taken(conn).close()

        def answer_hangs(conn: socket.socket) -> None:
            with taken(conn):  # held open, unanswered
                time.sleep(3)

        def unknown_ca(conn: socket.socket) -> None:
            self.context.wrap_socket(conn, server_side=True)

        return {
            "not-tls": not_tls,
            "unknown-ca": unknown_ca,
            "handshake-hangs": handshake_hangs,
            "handshake-reset": handshake_reset,
            "bad-record": bad_record,
            "closed": closed,
            "answer-hangs": answer_hangs,
        }[name]

    def post(self, behaviour: str, *, timeout: float = 0.5) -> requests.RequestException:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        if behaviour == "refused":
            listener.close()
        else:
            listener.listen(1)
            serve = self._behaviour(behaviour)

            def run() -> None:
                try:
                    conn, _ = listener.accept()
                    with conn:
                        serve(conn)
                except OSError:  # ssl.SSLError included: the client gave up, as meant
                    pass

            threading.Thread(target=run, daemon=True).start()
        # the client trusts our certificate, except where the test is that it does not
        verify: str | bool = True if behaviour == "unknown-ca" else str(self.cert)
        try:
            requests.post(
                f"https://localhost:{port}/v21.0/messages",
                json={"text": "On its way."},
                timeout=timeout,
                verify=verify,
            )
        except requests.RequestException as exc:
            return exc
        finally:
            listener.close()
        raise AssertionError(f"the POST ({behaviour}) did not fail")

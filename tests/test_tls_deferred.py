"""
TLS is not loaded until it is used (tlsgate.py): a real daemon (``proactord`` or
``twistd proactor``) on plain loopback maps none of pyOpenSSL's and cryptography's
native libraries (and under ``proactord`` none of the standard library's ssl), even
after it has launched a job, relayed a request to it, been scraped and delivered a
web-hook over plain HTTP; one that serves TLS maps them; a process that deferred TLS
still speaks https once a client of it meets an https URL.

What a process has loaded is read from its ``/proc/PID/maps``: the native libraries
the real daemon has mapped, however it came to load them (not a debug route of its
own, nor ``python -X importtime`` of its imports in another interpreter, which would
miss what a request loads later).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from _pki import make_pki
from treq.client import HTTPClient
from twisted.internet import endpoints
from twisted.internet.ssl import Certificate, CertificateOptions, PrivateCertificate
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.server import Site

from turberfield_twisted.testing.configs import DEMO
from turberfield_twisted.testing.daemon import COMMANDS, Daemon
from turberfield_twisted.testing.ports import free_ports
from turberfield_twisted.testing.subscriber import Subscriber, listen

#: The native parts of pyOpenSSL (through cffi) and of cryptography.
NATIVE = ("/_cffi_backend", "/cryptography/hazmat/bindings/_rust")

#: The standard library's TLS and hashes, and the OpenSSL they link.
STDLIB_NATIVE = ("/_ssl.", "/_hashlib.", "/libssl.so", "/libcrypto.so")


def tls_libraries(pid: int, names: tuple[str, ...] = NATIVE) -> set[str]:
    """The native TLS libraries ``pid`` has mapped (paths from its maps)."""
    with open(f"/proc/{pid}/maps") as maps:
        return {line.split()[-1] for line in maps if any(name in line for name in names)}


def client(reactor: Any) -> HTTPClient:
    return HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))


@pytest.mark.parametrize("command", COMMANDS)
@pytest_twisted.ensureDeferred
async def test_a_loopback_daemon_maps_no_tls_library_however_used(reactor, tmp_path, command):
    """A job launched, a request relayed, /metrics scraped, a hook delivered over plain
    HTTP: the daemon's process has mapped neither pyOpenSSL's nor cryptography's code;
    run by proactord, not the standard library's ssl and hashes (OpenSSL) either."""
    subscriber = Subscriber()
    with free_ports() as ports:
        receiver = await listen(reactor, subscriber, ports.low)
        config = tmp_path / "proactor.cfg"
        config.write_text(f"[proactor]\nlisten_port = 0\nchild_port_min = {ports.low + 1}\n"
                          f"child_port_max = {ports.high}\n[{DEMO}]\n")
        daemon = Daemon.start(reactor, tmp_path / "state", config=config, cwd=tmp_path,
                              command=command)
        try:
            url = await daemon.listening.addTimeout(30, reactor)
            http, auth = client(reactor), daemon.headers()

            async def call(method: str, path: str, body: Any = None) -> Any:
                response = await http.request(method, url + path, headers=auth, json=body,
                                              timeout=30, reactor=reactor)
                return response.code, await response.content()

            code, made = await call("POST", "/hooks", {
                "url": f"http://127.0.0.1:{receiver.address[1]}/hook",
                "events": ["worker:notified"]})
            assert code == 201, made
            _, launched = await call("POST", "/jobs", {"module": DEMO})
            guid = json.loads(launched)["guid"]
            _, job = await call("GET", f"/jobs/{guid}?wait=ready&timeout=30")
            assert json.loads(job)["state"] == "ready"
            code, _ = await call("POST", f"/jobs/{guid}/proxy/notify", {"n": 1})
            assert code == 202  # the demo's answer, relayed
            code, text = await call("GET", "/metrics")
            assert code == 200 and b"proactor_relay_requests_total" in text
            try:
                await subscriber.arrived(1).addTimeout(30, reactor)
            except Exception:
                print("\n".join(daemon.lines[-30:]))
                raise
            assert tls_libraries(daemon.pid) == set()
            stdlib = tls_libraries(daemon.pid, STDLIB_NATIVE)
            assert stdlib == set() if command == "proactord" else stdlib, stdlib
        finally:
            await daemon.stop(reactor)
            await receiver.down()


@pytest.mark.parametrize("command", COMMANDS)
@pytest_twisted.ensureDeferred
async def test_a_daemon_serving_tls_maps_it(reactor, tmp_path, command):
    """With an ssl: endpoint the daemon loads pyOpenSSL and cryptography (the check above
    would see them) and answers over TLS, run by proactord (the standard library's ssl
    kept out) as by twistd."""
    pki = make_pki(tmp_path / "pki")
    with free_ports() as ports:
        config = tmp_path / "proactor.cfg"
        config.write_text(f"[proactor]\nlisten_port = 0\nchild_port_min = {ports.low + 1}\n"
                          f"child_port_max = {ports.high}\n[{DEMO}]\n")
        listen_tls = (f"ssl:{ports.low}:privateKey={pki.key}:certKey={pki.cert}"
                      ":interface=127.0.0.1")
        daemon = Daemon.start(reactor, tmp_path / "state", config=config, cwd=tmp_path,
                              listen=listen_tls, command=command)
        try:
            url = await daemon.listening.addTimeout(30, reactor)
            assert tls_libraries(daemon.pid)
            env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"}
            done = await reactor_run(reactor, [sys.executable, "-P", "-c", _GET_HTTPS,
                                               url + "/health", str(pki.ca)], env)
            assert done.returncode == 0, done.stderr
            assert done.stdout.split()[0] == "200", done.stdout
        finally:
            await daemon.stop(reactor)


#: GET argv[1] over TLS checked against the CA in argv[2]; print the status.
_GET_HTTPS = """
import ssl, sys, urllib.request
context = ssl.create_default_context(cafile=sys.argv[2])
with urllib.request.urlopen(sys.argv[1], context=context, timeout=20) as answer:
    print(answer.status)
"""


#: A process that deferred TLS as the daemon does (its reactor, endpoints, Twisted's
#: HTTP client and treq loaded without it), then asks an https URL (the CA in argv[2]).
_DEFERRED_THEN_HTTPS = """
import sys
from turberfield_twisted.tlsgate import defer_tls, tls_deferred
assert defer_tls()
from twisted.internet import asyncioreactor
asyncioreactor.install()
from twisted.internet import reactor, task
import twisted.internet.endpoints, twisted.web.client, treq
assert "OpenSSL" not in sys.modules and tls_deferred()
from turberfield_twisted.worker.parent import make_http

async def main(reactor):
    http, pool = make_http(reactor, ca_pem=open(sys.argv[2], "rb").read())
    response = await http.get(sys.argv[1], timeout=20, reactor=reactor)
    print(response.code, (await response.content()).decode())
    await pool.closeCachedConnections()

task.react(lambda reactor: __import__("twisted").internet.defer.Deferred.fromCoroutine(
    main(reactor)))
"""


@pytest_twisted.ensureDeferred
async def test_a_process_that_deferred_tls_still_speaks_https(reactor, tmp_path):
    """After defer_tls and the imports of a daemon, an https GET (checked against a CA)
    loads TLS then and gets its answer."""
    pki = make_pki(tmp_path / "pki")
    context = CertificateOptions(
        privateKey=PrivateCertificate.loadPEM(pki.cert.read_bytes() + pki.key.read_bytes())
        .privateKey.original,
        certificate=Certificate.loadPEM(pki.cert.read_bytes()).original)
    subscriber = Subscriber()
    with free_ports() as ports:
        server = await endpoints.SSL4ServerEndpoint(reactor, ports.low, context,
                                                    interface="127.0.0.1").listen(
            Site(subscriber.app.resource()))
        try:
            script = tmp_path / "deferred.py"
            script.write_text(_DEFERRED_THEN_HTTPS)
            env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"}
            done = await reactor_run(reactor, [sys.executable, "-P", str(script),
                                               f"https://127.0.0.1:{ports.low}/", str(pki.ca)],
                                     env)
            assert done.returncode == 0, done.stderr
            assert done.stdout.split()[0] == "404"  # the receiver's answer, over TLS
        finally:
            await server.stopListening()


async def reactor_run(reactor: Any, argv: list[str], env: dict[str, str]
                      ) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` to its end without holding up the reactor (a thread waits for it)."""
    from twisted.internet.threads import deferToThreadPool

    pool = reactor.getThreadPool()
    return await deferToThreadPool(reactor, pool, subprocess.run, argv, env=env,
                                   capture_output=True, text=True, timeout=60,
                                   cwd=str(Path(__file__).parent))

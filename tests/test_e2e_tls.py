"""
The control API over TLS, end to end with real processes and a CA the test makes: the
CLI given the CA, a worker calling back over TLS (the daemon hands it the CA), a web-hook
receiver over TLS; a client without the CA refused; with client certificates required,
one without refused; plain listening off loopback refused at start, naming
insecure_listen.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest_twisted
import treq
from _pki import Pki, make_pki
from twisted.internet import endpoints
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    PrivateCertificate,
    optionsForClientTLS,
)
from twisted.internet.utils import getProcessOutputAndValue
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IPolicyForHTTPS
from twisted.web.server import Site
from zope.interface import implementer

from turberfield_twisted.tap import Options
from turberfield_twisted.testing.configs import DEMO
from turberfield_twisted.testing.daemon import Daemon
from turberfield_twisted.testing.ports import free_ports
from turberfield_twisted.testing.procs import children_of
from turberfield_twisted.testing.subscriber import Subscriber

PROACTOR = str(Path(sys.executable).parent / "proactor")


def ssl_listen(pki: Pki, port: int) -> str:
    return f"ssl:{port}:privateKey={pki.key}:certKey={pki.cert}:interface=127.0.0.1"


@implementer(IPolicyForHTTPS)
class ClientCertPolicy:
    """Trust ``ca``; show ``client`` (a PrivateCertificate) if given."""

    def __init__(self, ca: Path, client: PrivateCertificate | None = None):
        self.ca = Certificate.loadPEM(ca.read_bytes())
        self.client = client

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        return optionsForClientTLS(hostname.decode(), trustRoot=self.ca,
                                   clientCertificate=self.client)


async def cli(reactor: Any, state: Path, *args: str) -> tuple[int, str]:
    env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", "HOME": str(state.parent)}
    out, err, code = await getProcessOutputAndValue(
        PROACTOR, ["--state-dir", str(state), *args], env=env, reactor=reactor)
    return code, (out + err).decode("utf-8", "replace")


@pytest_twisted.ensureDeferred
async def test_over_tls_the_cli_a_worker_and_a_hook_receiver_all_work(reactor, tmp_path):
    """With the CA: the CLI, a worker's call back, a delivery to https; without it: refused."""
    pki = make_pki(tmp_path / "pki")
    subscriber = Subscriber()
    context = CertificateOptions(
        privateKey=PrivateCertificate.loadPEM(pki.cert.read_bytes() + pki.key.read_bytes())
        .privateKey.original,
        certificate=Certificate.loadPEM(pki.cert.read_bytes()).original)
    config = tmp_path / "proactor.cfg"
    with free_ports() as ports:  # the API's port, the receiver's, then the workers'
        receiver = await endpoints.SSL4ServerEndpoint(reactor, ports.low + 1, context,
                                                      interface="127.0.0.1").listen(
            Site(subscriber.app.resource()))
        try:
            config.write_text(f"[proactor]\nlisten_port = 0\nchild_port_min = {ports.low + 2}"
                              f"\nchild_port_max = {ports.high}\ntls_ca = {pki.ca}\n"
                              f"hook_ca = {pki.ca}\n[{DEMO}]\n")
            daemon = Daemon.start(reactor, tmp_path / "state", config=config, cwd=tmp_path,
                                  listen=ssl_listen(pki, ports.low))
            try:
                url = await daemon.listening.addTimeout(30, reactor)
                assert url.startswith("https://127.0.0.1:")
                code, text = await cli(reactor, tmp_path / "state", "--ca", str(pki.ca),
                                       "launch", DEMO, "--wait")
                assert code == 0, text
                guid = text.strip()
                code, text = await cli(reactor, tmp_path / "state", "--ca", str(pki.ca),
                                       "hooks", "add",
                                       f"https://127.0.0.1:{receiver.getHost().port}/hook",
                                       "worker:notified")
                assert code == 0, text
                # The worker calls back over TLS, checking the daemon with the CA it was handed.
                code, text = await cli(reactor, tmp_path / "state", "--ca", str(pki.ca),
                                       "send", guid, "POST", "/notify", "--json", '{"n": 1}')
                assert code == 0 and json.loads(text) == {"notified": True}, text
                await subscriber.arrived(1).addTimeout(30, reactor)
                assert subscriber.events()[0][1] == "notified"
                # Without the CA (the system's store does not know it): refused, saying why.
                code, text = await cli(reactor, tmp_path / "state", "ls")
                assert code == 1 and "--ca" in text, text
                code, text = await cli(reactor, tmp_path / "state", "--ca", str(pki.other_ca),
                                       "ls")
                assert code == 1, text
                assert not daemon.ended.called
            finally:
                await daemon.stop(reactor)
        finally:
            await receiver.stopListening()
    assert children_of(os.getpid()) == []


@pytest_twisted.ensureDeferred
async def test_with_client_certificates_required_a_client_without_one_is_refused(
        reactor, tmp_path):
    """tls_client_ca: a client showing a certificate that CA signed is served; one without not."""
    pki = make_pki(tmp_path / "pki")
    config = tmp_path / "proactor.cfg"
    config.write_text(f"[proactor]\nlisten_port = 0\ntls_client_ca = {pki.client_ca}\n")
    with free_ports(1) as port:
        daemon = Daemon.start(reactor, tmp_path / "state", config=config, cwd=tmp_path,
                              listen=ssl_listen(pki, port.low))
        await check_client_certificates(reactor, daemon, pki)


async def check_client_certificates(reactor: Any, daemon: Daemon, pki: Pki) -> None:
    try:
        url = await daemon.listening.addTimeout(30, reactor)
        client = PrivateCertificate.loadPEM(pki.client_cert.read_bytes()
                                            + pki.client_key.read_bytes())
        outcomes = []
        for shown in (client, None):
            pool = HTTPConnectionPool(reactor, persistent=False)
            agent = Agent(reactor, ClientCertPolicy(pki.ca, shown), pool=pool)
            try:
                response = await treq.get(url + "/jobs", headers=daemon.headers(),
                                          agent=agent, timeout=10, reactor=reactor)
                outcomes.append(response.code)
                await response.content()
            except Exception as exc:  # the handshake fails: the server wants a certificate
                outcomes.append(type(exc).__name__)
        assert outcomes[0] == 200 and outcomes[1] != 200, outcomes
    finally:
        await daemon.stop(reactor)


@pytest_twisted.ensureDeferred
async def test_plain_listening_off_loopback_is_refused_at_start_naming_the_option(
        reactor, tmp_path):
    """--listen tcp:0:interface=0.0.0.0 without TLS: exit 1, one line naming insecure_listen."""
    daemon = Daemon.start(reactor, tmp_path / "state", cwd=tmp_path,
                          listen="tcp:0:interface=0.0.0.0")
    status = await daemon.ended.addTimeout(30, reactor)
    said = [line for line in daemon.lines if line.strip()]
    assert status.code == 1 and len(said) == 1 and "insecure_listen" in said[0], said
    assert not (tmp_path / "state").exists()


@pytest_twisted.ensureDeferred
async def test_a_key_file_that_cannot_be_read_is_one_line_at_start(reactor, tmp_path):
    """An ssl: endpoint naming a missing key: exit 1, one line naming the file (both ways)."""
    pki = make_pki(tmp_path / "pki")
    config = tmp_path / "proactor.cfg"
    listen = f"ssl:0:privateKey={tmp_path / 'gone.key'}:certKey={pki.cert}"
    for extra in ("", f"tls_client_ca = {pki.client_ca}\n"):  # Twisted's string; ours
        config.write_text(f"[proactor]\nlisten_port = 0\n{extra}")
        daemon = Daemon.start(reactor, tmp_path / "state", config=config, cwd=tmp_path,
                              listen=listen)
        status = await daemon.ended.addTimeout(30, reactor)
        said = [line for line in daemon.lines if line.strip()]
        assert status.code == 1 and len(said) == 1 and "gone.key" in said[0], said


def test_insecure_listen_true_lets_it_start_with_a_warning(tmp_path):
    """insecure_listen = true: the same endpoint is taken, with a warning for each start."""
    config = tmp_path / "proactor.cfg"
    config.write_text("[proactor]\ninsecure_listen = true\n")
    options = Options()
    options.parseOptions(["--config", str(config), "--state-dir", str(tmp_path / "state"),
                          "--listen", "tcp:8080:interface=0.0.0.0"])
    assert "insecure_listen = true" in options["listen_warning"]
    assert "in clear" in options["listen_warning"]

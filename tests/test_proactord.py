"""
``proactord``: twistd for the proactor alone, with the standard library's
TLS kept out of its process (turberfield_twisted/proactord.py, tlsgate.py).
The daemon it runs is tested end to end by every test that starts one
through the kit (``testing.daemon``'s default command); test_tls_deferred.py
reads its maps.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

#: In a fresh interpreter: keep the stdlib's TLS out, import what a daemon imports
#: first, then hash, sign and compare as the daemon does.
_KEPT_OUT = """
import sys
from turberfield_twisted.tlsgate import keep_out_stdlib_tls, stdlib_tls_kept_out
assert keep_out_stdlib_tls() and stdlib_tls_kept_out()
import hashlib, hmac, secrets
import twisted.python.compat, twisted.scripts.twistd, http.client, urllib.request
assert not {"ssl", "_ssl", "_hashlib"} & set(sys.modules), "loaded"
print(hashlib.sha256(b"abc").hexdigest())
print(hmac.new(b"key", b"body", hashlib.sha256).hexdigest())
print(hmac.compare_digest(b"a", b"a"), secrets.compare_digest("a", "b"))
try:
    import ssl
except ModuleNotFoundError as exc:
    print("refused:", exc)
"""

#: ssl loaded first: the gate changes nothing and says so.
_TOO_LATE = """
import ssl
from turberfield_twisted.tlsgate import keep_out_stdlib_tls, stdlib_tls_kept_out
print(keep_out_stdlib_tls(), stdlib_tls_kept_out())
"""


def run(code: str) -> list[str]:
    done = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).parent)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_with_the_stdlib_tls_kept_out_hashes_and_compares_still_work():
    """Twisted's first imports go on without ssl and _hashlib; SHA-256, HMAC and
    constant-time compares give the same answers; importing ssl says why it fails."""
    sha, _, compares, refused = run(_KEPT_OUT)
    assert sha == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert compares == "True False"
    assert refused.startswith("refused: ssl is kept out of this daemon"), refused


def test_hmac_without_openssl_equals_hmac_with_it():
    """The daemon's HMAC (its own SHA-2, no OpenSSL) equals the usual one byte for byte."""
    import hashlib
    import hmac

    _, mac, _, _ = run(_KEPT_OUT)
    assert mac == hmac.new(b"key", b"body", hashlib.sha256).hexdigest()


def test_the_gate_does_nothing_once_ssl_is_loaded():
    """Called after ssl is loaded, keep_out_stdlib_tls returns False and installs nothing."""
    assert run(_TOO_LATE) == ["False False"]


def test_proactord_knows_the_proactor_command_alone():
    """proactord's help names proactor as its one command: no other plugin is scanned."""
    proactord = Path(sys.executable).parent / "proactord"
    done = subprocess.run([str(proactord), "--help"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    commands = done.stdout.split("Commands:", 1)[1].split()
    assert commands[0] == "proactor" and "web" not in commands and "ftp" not in commands
    assert done.stdout.startswith("Usage: proactord")

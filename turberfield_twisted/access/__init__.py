"""
Access to the control API: who may call it (named tokens with a role, the
admin token and its rotation), how a run of wrong tokens is slowed, what
is kept of each change and refusal (the audit trail), and the TLS
settings of the API's listening endpoint.

It sits below the daemon: it keeps its records through the store, which
the daemon hands it as the interfaces declared here
(:class:`~.records.ITokenStore`, :class:`~.records.IAuditStore`), so none
of it knows SQLite or the daemon, and its tests use an in-memory store.
Nothing here imports pyOpenSSL or the TLS parts of Twisted until TLS is
configured (:mod:`.tls` imports them inside its functions).
"""

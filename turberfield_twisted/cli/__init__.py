"""
``proactor``, the command line of a running daemon's control API.

- :mod:`.main`: the parser and :func:`~.main.main`;
- :mod:`.commands`: each command;
- :mod:`.format`: how answers are printed;
- :mod:`.client`: :class:`~.client.ControlClient`, the API's client (also
  the testing kit's).

It imports only itself, the worker's JSON client it builds on,
:mod:`turberfield_twisted.contract` and :mod:`turberfield_twisted.errors`.
"""

"""
``proactor``, the command line of a running daemon's control API.

- :mod:`.main`: :func:`~.main.main`, and its errors saying what to do next;
- :mod:`.parser`: the commands' arguments;
- :mod:`.commands`: each command; :mod:`.follow`: those that follow the
  event stream (``logs -f``, ``watch``); :mod:`.pick`: guids and hook ids
  by any unique beginning;
- :mod:`.format`: how answers are printed (a worker's control characters
  escaped);
- :mod:`.client`: :class:`~.client.ControlClient`, the API's client (also
  the testing kit's).

It imports only itself, the worker's JSON client it builds on,
:mod:`turberfield_twisted.contract` and :mod:`turberfield_twisted.errors`.
"""

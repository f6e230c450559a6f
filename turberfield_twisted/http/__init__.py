"""
The control API: JSON over HTTP, routed by :mod:`.router` (Klein's decorators, without Klein).

- :mod:`.web`: the JSON router base (bounded bodies, bearer auth) and the one
  table from errors to HTTP statuses;
- :mod:`.api`: :class:`~.api.ControlAPI`, the routes; :mod:`.args`, what a
  request may say; :mod:`.views`, how jobs and modules are shown;
- :mod:`.hooks`: the ``/hooks`` routes; :mod:`.placement`: a remote
  worker's "I listen here";
- :mod:`.events`: ``GET /events``, Server-Sent Events;
- :mod:`.relay`: ``/jobs/{guid}/proxy/``, each relayed exchange;
  :mod:`.upstream`, where a relayed request goes (and the seam for other
  mounts); :mod:`.pool`, the kept connections it goes on (:mod:`.agentclient`
  through an ``IAgent``); :mod:`.rewrite`, what it changes on the way;
- :mod:`.site`, :mod:`.front`, :mod:`.channel`: the API's connections: relayed
  requests read as bytes by the front, anything else handed to Twisted's
  channel (bounded) and past the router where relayed;
- :mod:`.openapi`: the description of all of it.

Twisted's web imports the reactor: import these only once the asyncio
reactor is installed. Nothing here imports Klein or werkzeug (a contract
of ``.importlinter``): workers are Klein's, the daemon's routes are
:mod:`.router`'s.
"""

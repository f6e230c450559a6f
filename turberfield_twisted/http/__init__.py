"""
The control API: JSON over HTTP, Klein routes.

- :mod:`.web`: the JSON Klein base (bounded bodies, bearer auth) and the one
  table from errors to HTTP statuses;
- :mod:`.api`: :class:`~.api.ControlAPI`, the routes; :mod:`.args`, what a
  request may say; :mod:`.views`, how jobs and modules are shown;
- :mod:`.hooks`: the ``/hooks`` routes; :mod:`.placement`: a remote
  worker's "I listen here";
- :mod:`.events`: ``GET /events``, Server-Sent Events;
- :mod:`.relay`, :mod:`.site`: ``/jobs/{guid}/proxy/`` and the site that
  routes relayed requests past Klein;
- :mod:`.openapi`: the description of all of it.

``import klein`` imports the reactor: import these only once the asyncio
reactor is installed.
"""

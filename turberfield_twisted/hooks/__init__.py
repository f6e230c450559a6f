"""
Web-hooks: job events told to subscribers by signed HTTP POSTs.

- :mod:`.dispatcher`: :class:`~.dispatcher.HookDispatcher`, the
  subscriptions, their ordered queues, delivery and retries, kept in the store;
- :mod:`.subscription`: one subscription and its queue and counters;
- :mod:`.rules`: what a subscription may be (allowed URLs, event filters)
  and how a delivery is signed.

The ``/hooks`` routes are :mod:`turberfield_twisted.http.hooks`.
"""

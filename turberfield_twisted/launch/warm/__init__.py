"""
Warm launch: workers forked from a template process that has imported the
runtime, Klein and the module already.

- :mod:`.launcher`: :class:`~.launcher.WarmLauncher` and a template per module;
- :mod:`.process`: a forked worker as the daemon sees it;
- :mod:`.template`: the template process itself (``python -P -m
  turberfield_twisted.launch.warm.template MODULE``).
"""

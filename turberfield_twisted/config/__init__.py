"""
The daemon's config: what its files may say, checked whole at start and at
each reload, as typed records.

- :mod:`.settings`: :func:`~.settings.check_config` and the records it
  makes (the initiator's section, each module's, each declared job's);
- :mod:`.readers`: each value's reader, and where a key is set;
- :mod:`.policy`: the restart policy and the limits a section sets;
- :mod:`.names`: the patterns a guid, a session, a key or an event name
  must match;
- :mod:`.job_section`: a launch's overrides checked, and the section a job's
  worker reads composed.

The text format itself (the ConfigParser, parsing, redaction) is
:mod:`turberfield_twisted.configtext`, which the worker shares. No reactor
here: the daemon imports this before it starts one.
"""

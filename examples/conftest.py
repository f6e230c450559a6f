# The testing kit's pytest fixtures (start_worker, start_initiator) are opt-in:
pytest_plugins = ["turberfield_twisted.testing.pytest_plugin"]

"""Example worker modules and the ``make run`` demo."""

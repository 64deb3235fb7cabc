"""The error a user must fix before a search can start. Free of QGIS, so the search flow that
reports it (flow.py) can be tested without it."""


class InputError(ValueError):
    """Something about what to search that the user must fix; the message says what."""

"""`fastbox bench ...` and `fastbox burst`: benchmarking and burst commands."""


def register(app):
    """Registers nothing yet: the bench commands land with issue 5."""

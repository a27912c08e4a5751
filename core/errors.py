"""User-facing errors: one clear sentence, shown without a traceback by the CLI and the app."""


class InkscribeError(Exception):
    """A problem the user can act on (bad file, missing model, wrong labels...)."""


class BadInputError(InkscribeError):
    """An input file that cannot be read safely."""


class ModelError(InkscribeError):
    """A model that is missing, incomplete or of the wrong kind."""


class CancelledError(InkscribeError):
    """A long job stopped on request."""

"""User-facing errors: one line that names the file and the fix, never a traceback."""


class TwdeployError(Exception):
    """An error caused by the user's input; the CLI prints its message as one line and exits 1."""


class BadItemError(TwdeployError):
    """One bad item (image, mask, frame) in a batch: reported and skipped, never fatal."""

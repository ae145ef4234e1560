"""User-facing errors: the CLI prints them as one line and exits with code 2, no traceback."""


class UserError(Exception):
    """Bad input from the user (recipe, file, argument). The message names what is wrong."""


class Stopped(Exception):
    """Training stopped on request (SIGTERM, SIGINT) after writing a checkpoint: the CLI prints the
    message and exits with `code` (0 for SIGTERM, 130 for SIGINT); rerunning resumes."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code

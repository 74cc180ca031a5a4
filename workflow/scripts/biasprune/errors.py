"""The one error type a user can cause, with the message shape every check uses."""


class ConfigError(ValueError):
    """Bad user input: one line naming the file, the key and what was expected."""

    def __init__(self, file: object, key: str, expected: str, got: object = None):
        self.file, self.key, self.expected = str(file), key, expected
        message = f"{file}: {key}: expected {expected}"
        if got is not None:
            message += f", got {got!r}"
        super().__init__(message)

"""The one error type a user can cause, with the message shape every check uses."""

import difflib


class ConfigError(ValueError):
    """Bad user input: one line naming the file, the key and what was expected."""

    def __init__(self, file: object, key: str, expected: str, got: object = None):
        self.file, self.key, self.expected = str(file), key, expected
        message = f"{file}: {key}: expected {expected}"
        if got is not None:
            message += f", got {got!r}"
        super().__init__(message)


class ConfigErrors(ConfigError):
    """Several problems found in one pass, one line each (the first one's fields, for callers that read
    one)."""

    def __init__(self, errors: list[ConfigError]):
        first = errors[0]
        self.file, self.key, self.expected, self.errors = first.file, first.key, first.expected, errors
        ValueError.__init__(self, "\n".join(str(error) for error in errors))


def raise_all(errors: list[ConfigError]) -> None:
    """Raise the problems found (one error as itself, several together); nothing when the list is empty."""
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ConfigErrors(errors)


def did_you_mean(word: object, choices) -> str:
    """' (did you mean 'x'?)' for the choice closest to a mistyped word, or '' when none is close."""
    if not isinstance(word, str):
        return ""
    match = difflib.get_close_matches(word, [str(choice) for choice in choices], n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""

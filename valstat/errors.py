"""valstat's one exception: the library raises it for invalid input, the CLI prints it as one line."""


class ValstatError(ValueError):
    """Bad input: the message says what is wrong and what to do."""


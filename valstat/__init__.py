"""valstat: measure why small-validation-set CNN curves look the way they do."""

__version__ = "0.1.0"

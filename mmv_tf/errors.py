"""The base of errors caused by users' input (files, configs, options), shown without a traceback."""


class InputError(ValueError):
    """Bad input from the user: the message names the file, field or option and what is wrong."""


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; training stopped without saving the broken weights."""

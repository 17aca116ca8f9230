def program(tokens):
    """Most recent: which token group occurred last.

    Returns 0 ('\"'), 1 (\"'\").
    """
    for token in reversed(tokens):
        if token in {'"'}:
            return 0
        if token in {"'"}:
            return 1
    return 0

def program(tokens):
    """Density threshold: a signed count averaged over the context, compared with 2/7.

    Returns 0 (']'), 1 (']]').
    """
    count = tokens.count('[') - tokens.count(']')
    # count / len(tokens) >= 2/7, in integers
    return 1 if 7 * count >= 2 * len(tokens) else 0

"""One module per command, each with ``main(argv=None) -> int``: thin
shells that parse arguments and put the layers below to work.
"""

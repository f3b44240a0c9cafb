"""The search side of bertc: ``bertc search`` (the compiler-aware architecture search; ``bertc search --help``
describes it) and ``bertc prune``. Their commands are registered by search/cli.py."""

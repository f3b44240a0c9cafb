def emit_c(module, ctx):
    pass

def plan_memory(module, ctx):
    pass

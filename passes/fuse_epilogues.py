def fuse_epilogues(module, ctx):
    pass

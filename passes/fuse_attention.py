def fuse_attention(module, ctx):
    pass

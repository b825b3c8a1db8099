"""Dataset exports: asked for in create, read in reading, written in run, and copied out for
training in local_copy."""

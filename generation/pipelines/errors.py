"""Errors the model code raises, in a module that imports neither torch nor diffusers: the
services and the sweeps catch them in processes that never load a model."""


class ModelLoadError(Exception):
    """A model folder (or hub id) is missing, corrupt, or holds the wrong kind of pipeline.

    The message always names the folder or id, so it can be shown to whoever registered it.
    """

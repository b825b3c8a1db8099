"""Annotation API, a module per topic: ``campaigns`` for curators and engineers, ``rating`` for
raters."""

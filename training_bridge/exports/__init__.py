"""Dataset exports: asked for in create, read in reading, written in run (a writer per format
from formats, writing the typed columns of columns, the dataset card of card, and tar archives
with tar), and copied out for training in local_copy."""

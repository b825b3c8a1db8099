"""The sticker world: a small, fully offline universe in which the data loop means something.

Django-free. ``factors`` lists every factor of variation (subjects, colours, expressions, the parts
of sticker style, motions) in one place; ``render`` draws stickers and 8-frame animations from a
``StickerSpec`` deterministically; ``captions`` writes prompts from templates with synonyms;
``sampling`` draws specs from named seed streams, so the held-out split that evaluation uses can
never be drawn by a training path.
"""
